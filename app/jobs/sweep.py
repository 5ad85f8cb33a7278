"""The sweep: ends tasks whose job vanished or whose worker died, so nobody waits forever.

RQ notices a dead worker only when its heartbeat expires and some live worker runs maintenance
(10 minutes by default). Users must learn within a minute or two, so every worker and every web
process runs this check every SWEEP_INTERVAL seconds. It is idempotent: ending a task is one
conditional UPDATE, so many sweepers and the job itself never end a task twice.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import redis
import sqlalchemy as sa
from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from app.extensions import db
from app.jobs import redis_client, task_queue
from app.jobs.callbacks import WORKER_DIED, remove_partial_export
from app.jobs.imports import remove_orphan_uploads
from app.models import Task, TaskStatus, utcnow
from app.progress import CANCELED, end_task

log = logging.getLogger(__name__)

JOB_LOST = "The task was lost when the task queue restarted. Please try again."
JOB_FAILED = "The task failed in the worker. Please try again."


def _aware(value: datetime) -> datetime:
    """RQ's timestamps, as aware UTC datetimes."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


Ending = tuple[TaskStatus, str]


def abandoned_ending(task: Task, connection: redis.Redis, heartbeat_limit: float,
                     enqueue_grace: timedelta) -> Ending | None:
    """How an active task must end because its job cannot end it, or None while the job is alive or waiting."""
    try:
        job = Job.fetch(task.id, connection=connection)
    except NoSuchJobError:
        # A row is committed a moment before its job is enqueued: give that moment room.
        return (TaskStatus.FAILED, JOB_LOST) if utcnow() - task.created_at > enqueue_grace else None
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        beat = job.last_heartbeat or job.started_at
        if beat is None:
            return None
        silent = (datetime.now(timezone.utc) - _aware(beat)).total_seconds()
        return (TaskStatus.FAILED, WORKER_DIED) if silent > heartbeat_limit else None
    if status in (JobStatus.FAILED, JobStatus.FINISHED):
        return (TaskStatus.FAILED, JOB_FAILED)  # the job ended without ending its row (killed between the two)
    if status in (JobStatus.STOPPED, JobStatus.CANCELED):
        return (TaskStatus.CANCELED, CANCELED)
    return None


def sweep_abandoned_tasks() -> int:
    """End every active task whose job is gone or dead; returns how many were ended."""
    config = current_app.config
    connection = redis_client()
    heartbeat_limit = 3 * config["JOB_MONITORING_INTERVAL"] + 5
    enqueue_grace = timedelta(seconds=config["SWEEP_ENQUEUE_GRACE"])
    active = db.session.scalars(sa.select(Task).where(Task.status.in_(TaskStatus.active()))).all()
    db.session.commit()
    ended = 0
    for task in active:
        ending = abandoned_ending(task, connection, heartbeat_limit, enqueue_grace)
        if ending is None:
            continue
        status, reason = ending
        if end_task(task.id, status, reason):
            remove_partial_export(task.id)  # only once the row says it did not finish
            ended += 1
            log.warning("sweep ended task %s: %s", task.id, reason)
    # Uploads whose task ended without its job (canceled while queued) or never got a row (web died).
    remove_orphan_uploads({t.id for t in active}, enqueue_grace.total_seconds())
    if active:
        # Let RQ's own registry agree with us (it would otherwise wait for maintenance).
        StartedJobRegistry(queue=task_queue()).cleanup()
    return ended


def sweep_once() -> None:
    """One sweep that logs instead of raising: Redis or the database may be down for a while."""
    try:
        sweep_abandoned_tasks()
    except (redis.exceptions.RedisError, sa.exc.SQLAlchemyError, OSError) as exc:
        db.session.rollback()
        log.warning("sweep skipped: %s", exc)
