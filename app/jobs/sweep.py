"""The sweep: ends tasks whose job vanished or whose worker died, so nobody waits forever.

RQ notices a dead worker only when its heartbeat expires and some live worker runs maintenance
(10 minutes by default). Users must learn within a minute or two, so every worker and every web
process is ready to run this check every SWEEP_INTERVAL seconds; one at a time per deployment
actually does (a Redis lock with an expiry: when its holder dies another takes over). Ending a task
is one conditional UPDATE, so a second sweeper or the job itself can never end a task twice.

The Task row is the truth: a started task is judged by the heartbeat its job writes into the row,
never by whether Redis still has the job (after a restart without persistence it has not, while the
work horse goes on). Only a queued task is judged by Redis: if its job is gone (a Redis restarted
without its data, a web process that died between committing the row and enqueuing), the sweep
enqueues it again, so a launch the user saw accepted is never lost.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, Callable, ContextManager

import redis
import sqlalchemy as sa
from flask import Flask, current_app
from redis.exceptions import LockError
from redis.lock import Lock
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from flask_babel import lazy_gettext as _l

from app.extensions import db
from app.i18n import task_locale
from app.jobs import redis_client, task_queue
from app.jobs.callbacks import WORKER_DIED, end_abandoned
from app.jobs.imports import remove_orphan_uploads
from app.jobs.reannounce import reannounce_endings
from app.logs import log_step
from app.models import Task, TaskStatus, utcnow
from app.progress import CANCELED, end_task

log = logging.getLogger(__name__)

# Lazy: written in each task's own language (task_locale around each ending).
JOB_FAILED = _l("The task failed in the worker. Please try again.")
SWEEP_LOCK = "microblog:sweep:lock"
# Who swept last, when, and how many tasks that sweep ended: for operators (and tests).
SWEEP_RECORD = "microblog:sweep:last"


def heartbeat_stale(task: Task, limit: timedelta) -> bool:
    """Whether a started task's job stopped beating more than limit ago."""
    beat = task.heartbeat_at or task.started_at or task.created_at
    return utcnow() - beat > limit


# Stands for a job Redis holds but RQ cannot read (a worker could not run it either).
UNREADABLE = object()


def job_lost(task: Task, job: Job | object | None, enqueue_grace: timedelta) -> bool:
    """Whether a queued task's job is gone from Redis (not just about to be enqueued)."""
    # A row is committed a moment before its job is enqueued: give that moment room.
    return job is None and utcnow() - task.created_at > enqueue_grace


def requeue_lost(task: Task) -> bool:
    """Enqueue again the job of a queued task that Redis lost; False if its kind no longer exists.

    The row is the truth and the job only its copy in Redis: a Redis restarted without its data, or
    a web process that died between committing the row and enqueuing, lost the job, not the task.
    Running it twice is harmless: only one run can move the row from queued to started.
    """
    from app.jobs import JOBS, enqueue_job

    if task.name not in JOBS:  # a kind this deployment no longer runs
        return False
    enqueue_job(task)
    log.warning("sweep re-enqueued task %s: its job was gone from Redis", task.id)
    log_step("requeued", task.id, task.user_id, task.created_at, level=logging.WARNING)
    return True


def queued_ending(task: Task, job: Job | object | None, enqueue_grace: timedelta) -> tuple[TaskStatus, str] | None:
    """How a queued task must end because of what became of its job, or None while it waits."""
    if job is None or job is UNREADABLE:
        if utcnow() - task.created_at <= enqueue_grace:
            return None
        return (TaskStatus.FAILED, JOB_FAILED)  # unreadable, or lost and not re-enqueueable
    status = job.get_status(refresh=False)
    if status in (JobStatus.FAILED, JobStatus.FINISHED):
        return (TaskStatus.FAILED, JOB_FAILED)  # the job ended without ever starting its row
    if status in (JobStatus.STOPPED, JobStatus.CANCELED):
        return (TaskStatus.CANCELED, CANCELED)
    return None


def fetch_jobs(task_ids: list[str], connection: redis.Redis) -> dict[str, Job | object | None]:
    """The RQ jobs of these tasks (None where Redis has none, UNREADABLE where RQ cannot read it),
    in one round trip when all are readable."""
    try:
        return dict(zip(task_ids, Job.fetch_many(task_ids, connection=connection)))
    except redis.exceptions.RedisError:
        raise
    except Exception:  # one unreadable job must not hide the others: fall back to one at a time
        log.exception("sweep: a job could not be read; reading them one by one")
    jobs: dict[str, Job | object | None] = {}
    for task_id in task_ids:
        try:
            jobs[task_id] = Job.fetch_many([task_id], connection=connection)[0]
        except redis.exceptions.RedisError:
            raise
        except Exception:
            log.warning("sweep: the job of task %s cannot be read", task_id)
            jobs[task_id] = UNREADABLE
    return jobs


def sweep_abandoned_tasks() -> int:
    """End every active task whose job is gone or dead; returns how many were ended."""
    config = current_app.config
    limit = timedelta(seconds=3 * config["JOB_MONITORING_INTERVAL"] + 5)
    enqueue_grace = timedelta(seconds=config["SWEEP_ENQUEUE_GRACE"])
    active = db.session.scalars(sa.select(Task).where(Task.status.in_(TaskStatus.active()))).all()
    db.session.commit()
    ended = 0
    for task in active:
        if task.status == TaskStatus.STARTED and heartbeat_stale(task, limit):
            with task_locale(task.id, task.language):
                abandoned = end_abandoned(task.id, WORKER_DIED)
            if abandoned:
                ended += 1
                log.warning("sweep ended task %s: no heartbeat for %s s", task.id, limit.total_seconds())
                log_step("swept", task.id, task.user_id, task.created_at, level=logging.WARNING, reason=WORKER_DIED)
    queued = [t for t in active if t.status == TaskStatus.QUEUED]
    jobs = fetch_jobs([t.id for t in queued], redis_client()) if queued else {}
    for task in queued:
        if job_lost(task, jobs[task.id], enqueue_grace) and requeue_lost(task):
            continue
        ending = queued_ending(task, jobs[task.id], enqueue_grace)
        if ending is None:
            continue
        with task_locale(task.id, task.language):
            swept = end_task(task.id, *ending)
        if swept:
            ended += 1
            log.warning("sweep ended task %s: %s", task.id, ending[1])
            log_step("swept", task.id, task.user_id, task.created_at, level=logging.WARNING, reason=ending[1])
    # Uploads whose task ended without its job (canceled while queued) or never got a row (web died).
    remove_orphan_uploads({t.id for t in active}, enqueue_grace.total_seconds())
    if active:
        # Let RQ's own registry agree with us (it would otherwise wait for maintenance).
        StartedJobRegistry(queue=task_queue()).cleanup()
    return ended


def sweeper_lock(connection: redis.Redis) -> Lock:
    """This process's handle on the deployment's one sweeper lock (it expires unless renewed)."""
    lock = current_app.extensions.get("sweep_lock")
    if lock is None:
        ttl = 3 * current_app.config["SWEEP_INTERVAL"]
        # thread_local=False: the token must survive between sweeps, whichever green thread runs them.
        lock = Lock(connection, SWEEP_LOCK, timeout=ttl, thread_local=False)
        current_app.extensions["sweep_lock"] = lock
    return lock


def take_sweeper_turn(connection: redis.Redis) -> bool:
    """Keep the sweeper lock if we hold it, else try to take it; False while another process sweeps."""
    lock = sweeper_lock(connection)
    if lock.local.token is not None:
        try:
            lock.reacquire()  # renew our turn for another ttl
            return True
        except LockError:  # it expired (we were slow) or Redis lost it in a restart
            lock.local.token = None
            log.warning("sweeper lock lost; taking it again if it is free")
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if lock.acquire(blocking=False, token=token):
        log.info("this process (pid %s) is the deployment's sweeper now", os.getpid())
        return True
    return False


def record_sweep(connection: redis.Redis, ended: int) -> None:
    """Note who swept, when, and what it ended."""
    lock = sweeper_lock(connection)
    by = lock.local.token.decode() if isinstance(lock.local.token, bytes) else str(lock.local.token)
    connection.hset(SWEEP_RECORD, mapping={"at": repr(time.time()), "by": by, "ended": ended})


def sweep_once() -> int | None:
    """One sweep, if it is this process's turn; logs instead of raising, whatever goes wrong.

    Returns how many tasks it ended, or None when another process holds the turn or it failed.
    """
    try:
        connection = redis_client()
        if not take_sweeper_turn(connection):
            return None
        ended = sweep_abandoned_tasks()
        reannounce_endings(connection)  # at-least-once terminal events for pages left open
        record_sweep(connection, ended)
        return ended
    except (redis.exceptions.RedisError, sa.exc.SQLAlchemyError, OSError) as exc:
        log.warning("sweep skipped: %s", exc)  # Redis or the database is down for a while
    except Exception:  # anything else (a bad job in Redis, a bug): logged, and the next sweep runs
        log.exception("sweep failed")
    finally:
        db.session.remove()  # the sweep's session ends here: a worker parent forks right after
    return None


def sweep_forever(app: Flask, wait: Callable[[float], bool], guard: ContextManager[Any] | None = None) -> None:
    """Sweep every SWEEP_INTERVAL seconds until wait(seconds) returns True; never dies of an error.

    `guard` is held while a sweep uses the database (the worker's fork guard: see worker/runner.py)."""
    from app.jobs.retention import retention_once

    while not wait(app.config["SWEEP_INTERVAL"]):
        try:
            with guard or nullcontext(), app.app_context():
                sweep_once()
                retention_once()  # issue 9: expired export files, one process per interval (a Redis lock)
        except Exception:  # even pushing the context failed: say so, and try again next time
            log.exception("sweep loop error")
