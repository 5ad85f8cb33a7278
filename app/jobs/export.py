"""Where a job is defined: the export of a user's posts to `posts.json`, emailed and downloadable.

This module runs in RQ work horses. It must never import eventlet or anything that patches.
"""
from __future__ import annotations

from json.encoder import encode_basestring_ascii as encode_string  # C-accelerated
import logging
import os
import smtplib
import socket
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from flask import current_app, render_template
from rq.timeouts import JobTimeoutException

from app import mailer
from app.extensions import db
from app.jobs.sessions import own_session
from app.models import Post, Task, TaskStatus, User, isoformat_z
from app.progress import ProgressPublisher, TaskCanceled, end_task, with_db_retry

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
# Writing the file is the long part; the email takes the rest of the bar.
WRITE_SHARE = 95


def export_path(task: Task) -> Path:
    """Where a task's export file lives (EXPORT_DIR is shared by web and workers)."""
    return Path(current_app.config["EXPORT_DIR"]) / str(task.user_id) / f"{task.id}.json"


def stored_result_path(task: Task) -> str:
    """What the row keeps: the file's path relative to EXPORT_DIR, which each machine mounts where it likes."""
    return f"{task.user_id}/{task.id}.json"


def result_file(task: Task) -> Path | None:
    """A finished export's file under this process's EXPORT_DIR, or None if it is not there.

    Rows written before paths were relative hold the worker's absolute path: it still counts when it
    lies under this EXPORT_DIR.
    """
    if not task.result_path:
        return None
    root = Path(current_app.config["EXPORT_DIR"]).resolve()
    path = (root / task.result_path).resolve()  # an absolute result_path replaces root here
    if root not in path.parents or not path.is_file():
        return None
    return path


def partial_path(path: Path) -> Path:
    """The name a file has while it is being written."""
    return path.with_name(path.name + ".part")


def remove_export_files(path: Path) -> None:
    """Delete an export file and its partial twin, whichever exist."""
    for candidate in (path, partial_path(path)):
        try:
            candidate.unlink()
        except FileNotFoundError:
            pass


@own_session
def export_posts(task_id: str) -> None:
    """RQ job: stream the user's posts to JSON, email the file, offer it for download."""
    publisher = ProgressPublisher(task_id)
    task = publisher.start()
    if task is None:
        log.info("task %s ended before it started; nothing to do", task_id)
        return
    path = export_path(task)
    if not write_export(task, path, publisher):
        return
    # The file is whole and the task is claimed for delivery: from here on nothing may delete the
    # file or fail the task. The email can only add a message; a lost finish is the sweep's to end.
    # (While it is sent, the work horse's heartbeat thread keeps the row fresh: app/jobs/heartbeat.py.)
    warning = deliver_export(task, path)
    finish_export(task, warning)


def write_export(task: Task, path: Path, publisher: ProgressPublisher) -> bool:
    """Write the file and claim the task for delivery; False if it was canceled meanwhile.

    Any failure here ends the task failed (its partial file removed) and is raised again, so RQ
    records the job as failed too, with the traceback, for operators.
    """
    try:
        write_posts(task.user_id, path, publisher)
        publisher.begin_delivery("Sending the email…")
    except TaskCanceled:
        log.info("task %s was canceled; removing its partial file", task.id)
        remove_export_files(path)
        return False
    except Exception as exc:
        db.session.rollback()
        log.exception("export %s failed", task.id)
        remove_export_files(path)
        end_task(task.id, TaskStatus.FAILED, describe_failure(exc))
        raise
    return True


def deliver_export(task: Task, path: Path) -> str | None:
    """Email the written file; a message for the user if that failed, whatever the reason. Never raises."""
    try:
        user = with_db_retry(lambda: _load_user(task.user_id))
        return send_export_email(user, task, path)
    except Exception:  # the file is written: a failed email is a message, never a failed task
        db.session.rollback()
        log.exception("export %s: the email could not be sent", task.id)
        return EMAIL_FAILED.format(reason="something went wrong while sending it")


def _load_user(user_id: int) -> User:
    """The exporting user, read in its own short transaction."""
    user = db.session.get(User, user_id)
    db.session.commit()
    return user


def finish_export(task: Task, warning: str | None) -> None:
    """End the task finished with its file; never raises (the file must outlive any error here)."""
    try:
        end_task(task.id, TaskStatus.FINISHED, warning, result_path=stored_result_path(task))
    except Exception:
        # The row may or may not say finished. It still says delivering and the file exists, so the
        # sweep ends it finished once this job's heartbeat stops.
        db.session.rollback()
        log.exception("export %s: could not record that it finished; the file is kept", task.id)


def iter_posts(user_id: int, batch_size: int = BATCH_SIZE) -> Iterator[list[sa.Row]]:
    """Yield the user's posts oldest first, in keyset batches, each read in its own short transaction."""
    posts = Post.__table__
    last: tuple | None = None
    while True:
        stmt = (
            sa.select(posts.c.timestamp, posts.c.id, posts.c.body)
            .where(posts.c.user_id == user_id)
            .order_by(posts.c.timestamp, posts.c.id)
            .limit(batch_size)
        )
        if last is not None:
            stmt = stmt.where(sa.tuple_(posts.c.timestamp, posts.c.id) > last)
        rows = with_db_retry(lambda: _read(stmt))
        if not rows:
            return
        yield rows
        last = (rows[-1].timestamp, rows[-1].id)


def _read(stmt: sa.Select) -> list[sa.Row]:
    """One batch in its own short transaction: never hold a snapshot open across progress writes."""
    # Core, not ORM: plain rows are ~3x cheaper and nothing here needs identity tracking.
    rows = db.session.connection().execute(stmt).all()
    db.session.commit()
    return rows


def write_posts(user_id: int, path: Path, publisher: ProgressPublisher) -> int:
    """Write `{"posts": [...]}` incrementally to path; returns the number of posts."""
    total = with_db_retry(lambda: _read(
        sa.select(sa.func.count()).select_from(Post).where(Post.user_id == user_id)))[0][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    written = 0
    with open(tmp, "w", encoding="utf-8") as out:
        out.write('{"posts": [')
        for rows in iter_posts(user_id):
            chunk = ",".join(
                f'{{"body": {encode_string(row.body)}, "timestamp": "{isoformat_z(row.timestamp)}"}}'
                for row in rows
            )
            out.write(("," if written else "") + chunk)
            written += len(rows)
            if total:
                publisher.advance(written * WRITE_SHARE // max(total, written))
        out.write("]}\n")
    os.replace(tmp, path)  # readers only ever see a whole file
    return written


EMAIL_FAILED = "Your export is ready to download, but the email could not be sent ({reason})."


def send_export_email(user: User, task: Task, path: Path) -> str | None:
    """Email the export (attached, or linked when large); a message for the user if it failed."""
    config = current_app.config
    size = path.stat().st_size
    link = f"{config['PUBLIC_URL']}/tasks/{task.id}/download"
    attach = size <= config["MAIL_ATTACHMENT_MAX_BYTES"]
    context = {"user": user, "link": link, "attached": attach, "size": size}
    msg = mailer.new_message("[Microblog] Your blog posts", config["MAIL_DEFAULT_SENDER"], user.email)
    msg.set_content(render_template("email/export_posts.txt", **context))
    msg.add_alternative(render_template("email/export_posts.html", **context), subtype="html")
    if attach:
        msg.add_attachment(path.read_bytes(), maintype="application", subtype="json", filename="posts.json")
    try:
        mailer.send(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("export %s: email to %s failed: %r", task.id, user.email, exc)
        return EMAIL_FAILED.format(reason=_smtp_reason(exc))
    return None


def _smtp_reason(exc: BaseException) -> str:
    """A short, user-readable reason for a mail failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "the mail server refused the connection"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "the mail server did not answer in time"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the mail server cannot deliver to an address with non-ASCII characters"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the mail server refused the address"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the mail server answered {exc.smtp_code}"
    return "the mail server could not be reached"


def describe_failure(exc: BaseException) -> str:
    """What a user reads when an export fails (the traceback goes to the worker log)."""
    if isinstance(exc, JobTimeoutException):
        return "The export took too long and was stopped. Please try again later."
    if isinstance(exc, OSError):
        return f"The export file could not be written ({exc.strerror or 'a storage error'})."
    if isinstance(exc, sa.exc.OperationalError):
        return "The database was unavailable during the export. Please try again."
    return "The export failed unexpectedly. Please try again."
