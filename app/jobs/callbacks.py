"""RQ hooks that end a Task row when its job ends outside the job body (timeouts, kills, stops)."""
from __future__ import annotations

import logging
from typing import Any

from app.extensions import db
from app.jobs.export import describe_failure, export_path, remove_export_files
from app.jobs.imports import remove_upload
from app.models import Task, TaskStatus
from app.progress import CANCELED, end_task

log = logging.getLogger(__name__)

WORKER_DIED = "The worker stopped unexpectedly while running this task. Please try again."


def remove_partial_export(task_id: str) -> None:
    """Delete what a stopped or killed export left on disk (a finished task keeps its file)."""
    remove_upload(task_id)  # an import's upload goes whatever the ending (a no-op for other tasks)
    task = db.session.get(Task, task_id)
    if task is not None and task.status != TaskStatus.FINISHED:
        remove_export_files(export_path(task))


def on_job_failure(job: Any, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ on_failure: end the task failed unless the job body already ended it."""
    db.session.rollback()
    end_task(job.id, TaskStatus.FAILED, describe_failure(exc_value))


def on_job_stopped(job: Any, connection: Any) -> None:
    """RQ on_stopped (a cancel stopped the work horse): clean up; the cancel already ended the row."""
    db.session.rollback()
    end_task(job.id, TaskStatus.CANCELED, CANCELED)
    remove_partial_export(job.id)


def on_work_horse_killed(job_id: str, ret_val: int | None) -> None:
    """The forked child died (OOM, SIGKILL): end its task failed at once."""
    db.session.rollback()
    ended = end_task(job_id, TaskStatus.FAILED, WORKER_DIED)
    remove_partial_export(job_id)
    if ended:
        log.warning("task %s failed: work horse died (waitpid status %s)", job_id, ret_val)
