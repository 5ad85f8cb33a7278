"""The heartbeat thread: keeps a running job's row fresh while the job has no progress to report.

Writing the file beats through ProgressPublisher.advance; counting the posts, a slow batch or the
email send report nothing for a while, so a small thread beats for them. The sweep judges a started
task by this beat alone (app/jobs/sweep.py): a job whose work horse lives is never failed, whatever
Redis remembers.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from flask import Flask, current_app

from app.extensions import db
from app.progress import HEARTBEAT_INTERVAL, ProgressPublisher

log = logging.getLogger(__name__)


def _beat_until(app: Flask, publisher: ProgressPublisher, stop: threading.Event) -> None:
    """Beat every HEARTBEAT_INTERVAL until stop is set or the task stops running."""
    with app.app_context():  # its own app context, so its own session and connection
        try:
            while not stop.wait(HEARTBEAT_INTERVAL / 2):
                if not publisher.beat():
                    return  # ended by someone else (a cancel): the job finds out by itself
        except Exception:  # a lost beat is survivable; a dead thread only means the job beats less
            log.exception("heartbeat of task %s stopped", publisher.task_id)
        finally:
            db.session.remove()


@contextmanager
def heartbeat(publisher: ProgressPublisher) -> Iterator[None]:
    """Beat for the task in a daemon thread while the block runs."""
    stop = threading.Event()
    thread = threading.Thread(target=_beat_until, args=(current_app._get_current_object(), publisher, stop),
                              name=f"heartbeat-{publisher.task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
