"""Retention: a finished export's file is deleted EXPORT_RETENTION_DAYS after the task finished.

Every sweeper loop (workers and web processes) calls `retention_once`; a Redis lock taken for
RETENTION_INTERVAL seconds makes one of them run it, once per interval for the whole deployment.
The row stays (history) with `file_deleted_at` set: from then on its download answers 410.
"""
from __future__ import annotations

import logging
from pathlib import Path

import redis
import sqlalchemy as sa
from flask import current_app

from app.extensions import db
from app.expiry import now, retention
from app.models import Task, TaskStatus

log = logging.getLogger(__name__)

LOCK_KEY = "microblog:retention-lock"
BATCH = 500  # files per run: a web process's hub is never held for long


def delete_export_file(task: Task) -> bool:
    """Delete one export's file and mark the row; True if this call marked it (committed)."""
    from app.jobs.export import export_path, remove_export_files, result_file

    changed = db.session.execute(
        sa.update(Task).where(Task.id == task.id, Task.file_deleted_at.is_(None)).values(file_deleted_at=now())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.commit()  # the row says "gone" before the file is: a download never finds half a file
    if task.result_path:
        # result_path is relative to EXPORT_DIR (wherever this machine mounts it); an old absolute one
        # under EXPORT_DIR still resolves. The derived path covers the file's .part twin as well.
        existing = result_file(task)
        remove_export_files(existing or export_path(task))
    return changed


def prune_expired(limit: int = BATCH) -> int:
    """Delete the files of exports that finished more than the retention period ago; how many."""
    cutoff = now() - retention()
    due = db.session.scalars(
        sa.select(Task).where(Task.status == TaskStatus.FINISHED, Task.result_path.is_not(None),
                              Task.file_deleted_at.is_(None), Task.finished_at <= cutoff).limit(limit)
    ).all()
    db.session.commit()
    pruned = sum(delete_export_file(task) for task in due)
    if pruned:
        log.info("retention deleted %d export file(s) older than %s", pruned, retention())
    return pruned


def retention_once(connection: redis.Redis | None = None) -> int | None:
    """Run retention if no other process did within RETENTION_INTERVAL; never raises."""
    try:
        connection = connection or current_app.extensions["redis"]
        if not connection.set(LOCK_KEY, "1", nx=True, ex=max(1, current_app.config.get("RETENTION_INTERVAL", 3600))):
            return None
        return prune_expired()
    except (redis.exceptions.RedisError, sa.exc.SQLAlchemyError, OSError) as exc:
        db.session.rollback()
        log.warning("retention skipped: %s", exc)
        return None
