"""The heartbeat thread: keeps a running job's row fresh while the job has no progress to report.

Every work horse runs one for its job's task (worker/runner.py), whatever the job kind: writing the
export beats through ProgressPublisher.advance as well, but counting the posts, a slow batch or the
email send report nothing for a while. The sweep judges a started task by this beat alone
(app/jobs/sweep.py): a task whose work horse lives is never failed, whatever Redis remembers.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from flask import Flask, current_app

from app.extensions import db
from app.progress import HEARTBEAT_INTERVAL, write_heartbeat

log = logging.getLogger(__name__)


def _beat_until(app: Flask, task_id: str, stop: threading.Event) -> None:
    """Beat every HEARTBEAT_INTERVAL while the task runs, until stop is set or the task ends."""
    with app.app_context():  # its own app context, so its own session and connection
        try:
            beating = False
            while not stop.wait(HEARTBEAT_INTERVAL):
                if write_heartbeat(task_id):
                    beating = True
                elif beating:
                    return  # it was running and is not any more: nothing left to prove
                # else: the job has not marked it started yet
        except Exception:  # a lost beat is survivable; a dead thread only means the job beats less
            log.exception("heartbeat of task %s stopped", task_id)
        finally:
            db.session.remove()


@contextmanager
def heartbeat(task_id: str) -> Iterator[None]:
    """Beat for the task in a daemon thread while the block runs (or until the process ends)."""
    stop = threading.Event()
    thread = threading.Thread(target=_beat_until, args=(current_app._get_current_object(), task_id, stop),
                              name=f"heartbeat-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
