"""When a finished export's file stops being downloadable (retention, issue 9); no job imports here."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app

from app.models import Task, TaskStatus, utcnow


def now() -> datetime:
    """The current naive UTC time; tests set config NOW (a callable) to move the clock."""
    clock = current_app.config.get("NOW")
    return clock() if clock else utcnow()


def retention() -> timedelta:
    """How long a finished export's file is kept."""
    return timedelta(days=current_app.config.get("EXPORT_RETENTION_DAYS", 7))


def expires_at(task: Task) -> datetime | None:
    """When the task's export file stops being downloadable; None if it has no (remaining) file."""
    if task.status != TaskStatus.FINISHED or not task.result_path or task.finished_at is None:
        return None
    if getattr(task, "file_deleted_at", None) is not None:
        return None
    return task.finished_at + retention()


def is_expired(task: Task) -> bool:
    """Whether a finished export's file is gone (deleted on time or early) or past its expiry."""
    if task.status != TaskStatus.FINISHED or not task.result_path:
        return False
    if task.file_deleted_at is not None:
        return True
    ends = expires_at(task)
    return ends is not None and ends <= now()
