"""Where a job is defined: the export of a user's posts to `posts.json`, emailed and downloadable.

This module runs in RQ work horses. It must never import eventlet or anything that patches.
"""
from __future__ import annotations

from json.encoder import encode_basestring_ascii as encode_string  # C-accelerated
import logging
import os
import smtplib
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from flask import current_app, render_template
from flask_mail import Message
from rq.timeouts import JobTimeoutException

from app.extensions import db, mail
from app.models import Post, Task, TaskStatus, User, isoformat_z
from app.progress import ProgressPublisher, TaskCanceled, end_task, with_db_retry

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
# Writing the file is the long part; the email takes the rest of the bar.
WRITE_SHARE = 95
NO_POSTS = "You have no posts to export."


def export_path(task: Task) -> Path:
    """Where a task's export file lives (EXPORT_DIR is shared by web and workers)."""
    return Path(current_app.config["EXPORT_DIR"]) / str(task.user_id) / f"{task.id}.json"


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


def export_posts(task_id: str) -> None:
    """RQ job: stream the user's posts to JSON, email the file, offer it for download."""
    publisher = ProgressPublisher(task_id)
    task = publisher.start()
    if task is None:
        log.info("task %s ended before it started; nothing to do", task_id)
        return
    path = export_path(task)
    try:
        total = count_posts(task.user_id)
        if not total:  # an empty file and an email about it would only puzzle
            end_task(task_id, TaskStatus.FINISHED, NO_POSTS, current=0, total=0)
            return
        written = write_posts(task.user_id, path, publisher, total)
        publisher.begin_delivery("Sending the email…")
        user = db.session.get(User, task.user_id)
        size = path.stat().st_size
        warning = send_export_email(user, task, path, written)
        delivery = None if warning else ("attached" if attaches(size) else "linked")
        end_task(task_id, TaskStatus.FINISHED, warning, result_path=str(path),
                 current=written, total=max(total, written), result_bytes=size, delivery=delivery)
    except TaskCanceled:
        log.info("task %s was canceled; removing its partial file", task_id)
        remove_export_files(path)
    except Exception as exc:
        db.session.rollback()
        log.exception("export %s failed", task_id)
        remove_export_files(path)
        end_task(task_id, TaskStatus.FAILED, describe_failure(exc))
        raise  # RQ records the job as failed too, with the traceback, for operators


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


def count_posts(user_id: int) -> int:
    """How many posts the user has."""
    return with_db_retry(lambda: _read(
        sa.select(sa.func.count()).select_from(Post).where(Post.user_id == user_id)))[0][0]


def write_posts(user_id: int, path: Path, publisher: ProgressPublisher, total: int | None = None) -> int:
    """Write `{"posts": [...]}` incrementally to path; returns the number of posts."""
    if total is None:
        total = count_posts(user_id)
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
                publisher.advance_count(written, total, share=WRITE_SHARE)
        out.write("]}\n")
    os.replace(tmp, path)  # readers only ever see a whole file
    return written


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Flask-Mail opens SMTP without a timeout: bound it so a silent server cannot hang the job."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def attaches(size: int) -> bool:
    """Whether a file of `size` bytes goes in the email itself (else the email links to it)."""
    return size <= current_app.config["MAIL_ATTACHMENT_MAX_BYTES"]


def send_export_email(user: User, task: Task, path: Path, count: int | None = None) -> str | None:
    """Email the export (attached, or linked when large); a message for the user if it failed."""
    config = current_app.config
    size = path.stat().st_size
    link = f"{config['PUBLIC_URL']}/tasks/{task.id}/download"
    attach = attaches(size)
    # `expires_at` arrives with the retention work (ops); until then the email names no expiry.
    context = {"user": user, "link": link, "attached": attach, "size": size, "count": count,
               "expires_at": getattr(task, "expires_at", None)}
    msg = Message(
        "[Microblog] Your blog posts",
        sender=config["MAIL_DEFAULT_SENDER"],
        recipients=[user.email],
        body=render_template("email/export_posts.txt", **context),
        html=render_template("email/export_posts.html", **context),
    )
    if attach:
        msg.attach("posts.json", "application/json", path.read_bytes())
    try:
        with _socket_timeout(config.get("MAIL_TIMEOUT", 30)):
            mail.send(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("export %s: email to %s failed: %r", task.id, user.email, exc)
        return f"Your export is ready to download, but the email could not be sent ({_smtp_reason(exc)})."
    return None


def _smtp_reason(exc: BaseException) -> str:
    """A short, user-readable reason for a mail failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "the mail server refused the connection"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "the mail server did not answer in time"
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
        return f"The export file could not be written ({exc.strerror or type(exc).__name__})."
    if isinstance(exc, sa.exc.OperationalError):
        return "The database was unavailable during the export. Please try again."
    return f"The export failed unexpectedly ({type(exc).__name__}). Please try again."
