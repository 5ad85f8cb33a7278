"""RQ hooks that end a Task row when its job ends outside the job body (timeouts, kills, stops).

Each runs with a session of its own (app/jobs/sessions.py): the worker parent forks the next work
horse right after, and the child must inherit no open transaction.
"""
from __future__ import annotations

import logging
from typing import Any

from flask_babel import lazy_gettext as _l

from app.extensions import db
from app.i18n import task_locale
from app.jobs.export import describe_failure, export_path, remove_export_files, stored_result_path
from app.jobs.imports import remove_upload
from app.jobs.sessions import own_session
from app.models import Task, TaskStatus
from app.progress import CANCELED, end_task

log = logging.getLogger(__name__)

# Lazy: each is written in the language of the task it ends (see task_locale below).
WORKER_DIED = _l("The worker stopped unexpectedly while running this task. Please try again.")
EMAIL_UNKNOWN = _l("Your export is ready to download; the email may not have been sent.")


def remove_partial_export(task_id: str) -> None:
    """Delete what a stopped or killed export left on disk (a finished task keeps its file)."""
    remove_upload(task_id)  # an import's upload goes whatever the ending (a no-op for other tasks)
    task = db.session.get(Task, task_id)
    db.session.commit()  # end the read: nothing may stay open in the worker parent
    if task is not None and task.status != TaskStatus.FINISHED:
        remove_export_files(export_path(task))


def end_abandoned(task_id: str, reason: str) -> Task | None:
    """End a task its job can no longer end: finished if its file was written and delivery began
    (the file is the user's; the contract says a written file ends finished), else failed."""
    task = db.session.get(Task, task_id)
    db.session.commit()
    if task is None or not task.is_active:
        return None
    path = export_path(task)
    if task.delivering and path.is_file():
        return end_task(task_id, TaskStatus.FINISHED, EMAIL_UNKNOWN, result_path=stored_result_path(task))
    ended = end_task(task_id, TaskStatus.FAILED, reason)
    if ended is not None:
        remove_export_files(path)  # only once the row says it did not finish
    return ended


@own_session
def on_job_failure(job: Any, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ on_failure: end the task unless the job body already ended it (RQ's own bookkeeping may be
    what failed, after the task finished: then nothing changes)."""
    with task_locale(job.id):
        end_abandoned(job.id, describe_failure(exc_value))


@own_session
def on_job_stopped(job: Any, connection: Any) -> None:
    """RQ on_stopped (a cancel stopped the work horse): clean up; the cancel already ended the row."""
    with task_locale(job.id):
        end_task(job.id, TaskStatus.CANCELED, CANCELED)
    remove_partial_export(job.id)


@own_session
def on_work_horse_killed(job_id: str, ret_val: int | None) -> None:
    """The forked child died (OOM, SIGKILL): end its task at once."""
    with task_locale(job_id):
        ended = end_abandoned(job_id, WORKER_DIED)
    if ended is not None:
        log.warning("task %s %s: work horse died (waitpid status %s)", job_id, ended.status.value, ret_val)
