"""Where a job is defined: the export of a user's posts to `posts.json`, emailed and downloadable.

This module runs in RQ work horses. It must never import eventlet or anything that patches.
"""
from __future__ import annotations

import logging
import os
import smtplib
import socket
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from flask import current_app, render_template
from flask_babel import gettext as _, lazy_gettext as _l
from rq.timeouts import JobTimeoutException

from app import mailer
from app.expiry import retention
from app.extensions import db
from app.jobs import post_stream
from app.jobs.sessions import own_session
from app.models import Post, Task, TaskStatus, User, utcnow
from app.progress import ProgressPublisher, TaskCanceled, end_task, with_db_retry

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
# Writing the file is the long part; the email takes the rest of the bar.
WRITE_SHARE = 95
NO_POSTS = _l("You have no posts to export.")


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
    written = write_export(task, path, publisher)
    if written is None:
        return
    # The file is whole and the task is claimed for delivery: from here on nothing may delete the
    # file or fail the task. The email can only add a message; a lost finish is the sweep's to end.
    # (While it is sent, the work horse's heartbeat thread keeps the row fresh: app/jobs/heartbeat.py.)
    warning = deliver_export(task, path, written)
    finish_export(task, path, warning, written)


def write_export(task: Task, path: Path, publisher: ProgressPublisher) -> int | None:
    """Write the file and claim the task for delivery; the posts written, or None when there is
    nothing more to do (canceled meanwhile, or no posts: the task has ended then).

    Any failure here ends the task failed (its partial file removed) and is raised again, so RQ
    records the job as failed too, with the traceback, for operators.
    """
    try:
        total = count_posts(task.user_id)
        if not total:  # an empty file and an email about it would only puzzle
            end_task(task.id, TaskStatus.FINISHED, NO_POSTS, current=0, total=0)
            return None
        written = write_posts(task.user_id, path, publisher, total)
        publisher.begin_delivery("Sending the email…")
    except TaskCanceled:
        log.info("task %s was canceled; removing its partial file", task.id)
        remove_export_files(path)
        return None
    except Exception as exc:
        db.session.rollback()
        log.exception("export %s failed", task.id)
        remove_export_files(path)
        end_task(task.id, TaskStatus.FAILED, describe_failure(exc))
        raise
    return written


def deliver_export(task: Task, path: Path, count: int) -> str | None:
    """Email the written file; a message for the user if that failed, whatever the reason. Never raises."""
    try:
        user = with_db_retry(lambda: _load_user(task.user_id))
        return send_export_email(user, task, path, count)
    except Exception:  # the file is written: a failed email is a message, never a failed task
        db.session.rollback()
        log.exception("export %s: the email could not be sent", task.id)
        return email_failed(_("something went wrong while sending it"))


def _load_user(user_id: int) -> User | None:
    """The exporting user, read in its own short transaction and kept as read: the commit would
    expire it, and the email's first look at its address would read the row again."""
    user = db.session.get(User, user_id)
    if user is not None:
        db.session.expunge(user)
    db.session.commit()
    return user


def finish_export(task: Task, path: Path, warning: str | None, written: int) -> None:
    """End the task finished with its file; never raises (the file must outlive any error here)."""
    try:
        size = path.stat().st_size
        delivery = None if warning else ("attached" if attaches(size) else "linked")
        end_task(task.id, TaskStatus.FINISHED, warning, result_path=stored_result_path(task),
                 current=written, total=written, result_bytes=size, delivery=delivery)
    except Exception:
        # The row may or may not say finished. It still says delivering and the file exists, so the
        # sweep ends it finished once this job's heartbeat stops.
        db.session.rollback()
        log.exception("export %s: could not record that it finished; the file is kept", task.id)


def iter_posts(user_id: int, batch_size: int = BATCH_SIZE) -> Iterator[post_stream.Batch]:
    """Yield the user's posts oldest first, in batches of (timestamp text, id, body) (see post_stream)."""
    return post_stream.iter_batches(user_id, batch_size)


def count_posts(user_id: int) -> int:
    """How many posts the user has (for the percentage and the no-posts rule)."""
    return with_db_retry(lambda: _count(user_id))


def write_posts(user_id: int, path: Path, publisher: ProgressPublisher, total: int | None = None) -> int:
    """Write `{"posts": [...]}` incrementally to path; returns the number of posts."""
    if total is None:
        total = count_posts(user_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    written = 0
    with open(tmp, "wb") as out:
        out.write(b'{"posts": [')
        for rows in iter_posts(user_id):
            out.write((b"," if written else b"") + post_stream.encode(rows))
            written += len(rows)
            if total:
                publisher.advance_count(written, total, share=WRITE_SHARE)
        out.write(b"]}\n")
    os.replace(tmp, path)  # readers only ever see a whole file
    return written


def email_failed(reason: str) -> str:
    """The finished task's message when the email did not go out."""
    return _("Your export is ready to download, but the email could not be sent (%(reason)s).", reason=reason)


def _count(user_id: int) -> int:
    """How many posts the user has (for the percentage), in its own short transaction."""
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Post).where(Post.user_id == user_id))
    db.session.commit()
    return total


def attaches(size: int) -> bool:
    """Whether a file of `size` bytes goes in the email itself (else the email links to it)."""
    return size <= current_app.config["MAIL_ATTACHMENT_MAX_BYTES"]


def send_export_email(user: User, task: Task, path: Path, count: int | None = None) -> str | None:
    """Email the export (attached, or linked when large); a message for the user if it failed."""
    config = current_app.config
    size = path.stat().st_size
    link = f"{config['PUBLIC_URL']}/tasks/{task.id}/download"
    attach = attaches(size)
    context = {"user": user, "link": link, "attached": attach, "size": size, "count": count,
               "expires_at": utcnow() + retention()}  # issue 9: the file is kept this long
    msg = mailer.new_message(_("[Microblog] Your blog posts"), config["MAIL_DEFAULT_SENDER"], user.email)
    msg.set_content(render_template("email/export_posts.txt", **context))
    msg.add_alternative(render_template("email/export_posts.html", **context), subtype="html")
    attachment = mailer.attach_file(msg, path, "posts.json", "application", "json") if attach else None
    try:
        mailer.send(msg, attachment)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("export %s: email to %s failed: %r", task.id, user.email, exc)
        return email_failed(_smtp_reason(exc))
    return None


def _smtp_reason(exc: BaseException) -> str:
    """A short, user-readable reason for a mail failure."""
    if isinstance(exc, ConnectionRefusedError):
        return _("the mail server refused the connection")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _("the mail server did not answer in time")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _("the mail server cannot deliver to an address with non-ASCII characters")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _("the mail server refused the address")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _("the mail server answered %(code)s", code=exc.smtp_code)
    return _("the mail server could not be reached")


def describe_failure(exc: BaseException) -> str:
    """What a user reads when an export fails (the traceback goes to the worker log)."""
    if isinstance(exc, JobTimeoutException):
        return _("The export took too long and was stopped. Please try again later.")
    if isinstance(exc, OSError):
        return _("The export file could not be written (%(reason)s).", reason=exc.strerror or _("a storage error"))
    if isinstance(exc, sa.exc.OperationalError):
        return _("The database was unavailable during the export. Please try again.")
    return _("The export failed unexpectedly. Please try again.")
