"""Where a job is defined: the export of a user's posts to `posts.json`, emailed and downloadable.

This module runs in RQ work horses. It must never import eventlet or anything that patches.
"""
from __future__ import annotations

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
from app.jobs import post_stream
from app.models import Post, Task, TaskStatus, User
from app.progress import ProgressPublisher, TaskCanceled, end_task, with_db_retry

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
# Writing the file is the long part; the email takes the rest of the bar.
WRITE_SHARE = 95


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
        write_posts(task.user_id, path, publisher)
        publisher.begin_delivery("Sending the email…")
        user = db.session.get(User, task.user_id)
        warning = send_export_email(user, task, path)
        end_task(task_id, TaskStatus.FINISHED, warning, result_path=str(path))
    except TaskCanceled:
        log.info("task %s was canceled; removing its partial file", task_id)
        remove_export_files(path)
    except Exception as exc:
        db.session.rollback()
        log.exception("export %s failed", task_id)
        remove_export_files(path)
        end_task(task_id, TaskStatus.FAILED, describe_failure(exc))
        raise  # RQ records the job as failed too, with the traceback, for operators


def iter_posts(user_id: int, batch_size: int = BATCH_SIZE) -> Iterator[post_stream.Batch]:
    """Yield the user's posts oldest first, in batches of (timestamp text, id, body) (see post_stream)."""
    return post_stream.iter_batches(user_id, batch_size)


def write_posts(user_id: int, path: Path, publisher: ProgressPublisher) -> int:
    """Write `{"posts": [...]}` incrementally to path; returns the number of posts."""
    total = with_db_retry(lambda: _count(user_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    written = 0
    with open(tmp, "wb") as out:
        out.write(b'{"posts": [')
        for rows in iter_posts(user_id):
            out.write((b"," if written else b"") + post_stream.encode(rows))
            written += len(rows)
            if total:
                publisher.advance(written * WRITE_SHARE // max(total, written))
        out.write(b"]}\n")
    os.replace(tmp, path)  # readers only ever see a whole file
    return written


def _count(user_id: int) -> int:
    """How many posts the user has (for the percentage), in its own short transaction."""
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Post).where(Post.user_id == user_id))
    db.session.commit()
    return total


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Flask-Mail opens SMTP without a timeout: bound it so a silent server cannot hang the job."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def send_export_email(user: User, task: Task, path: Path) -> str | None:
    """Email the export (attached, or linked when large); a message for the user if it failed."""
    config = current_app.config
    size = path.stat().st_size
    link = f"{config['PUBLIC_URL']}/tasks/{task.id}/download"
    attach = size <= config["MAIL_ATTACHMENT_MAX_BYTES"]
    context = {"user": user, "link": link, "attached": attach, "size": size}
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
