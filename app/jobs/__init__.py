"""Background jobs: the allow-list of what a user may launch, and how a launch happens."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

import redis
from flask import current_app
from rq import Callback, Queue
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.i18n import current_language
from app.jobs.callbacks import on_job_failure, on_job_stopped
from app.jobs.export import export_posts
from app.models import Task, User
from app.progress import publish


@dataclass(frozen=True)
class JobSpec:
    """A launchable job: the function RQ runs and the words users see."""

    func: Callable[[str], None]
    description: str


# Requests name a key of this mapping; the function object, never a string, goes to RQ.
JOBS: dict[str, JobSpec] = {
    "export_posts": JobSpec(export_posts, "Exporting posts"),
}


class TaskAlreadyActive(Exception):
    """The user already has this kind of task queued or running."""


class QueueUnavailable(Exception):
    """The task queue (Redis) could not take the job."""


def redis_client() -> redis.Redis:
    """This process's Redis client."""
    return current_app.extensions["redis"]


def task_queue() -> Queue:
    """The RQ queue tasks go to."""
    return Queue(current_app.config["TASK_QUEUE"], connection=redis_client())


def launch_task(user: User, name: str) -> Task:
    """Create the Task row, commit it, then enqueue its job; the row never outlives a failed enqueue."""
    spec = JOBS[name]
    task = Task(id=uuid.uuid4().hex, name=name, description=str(spec.description), user_id=user.id,
                language=current_language())
    db.session.add(task)
    try:
        db.session.commit()  # the unique partial index refuses a second active task of this kind
    except IntegrityError:
        db.session.rollback()
        raise TaskAlreadyActive(name) from None
    # Announce it before a worker can: published after the enqueue, `queued` could follow `started`.
    publish(task)
    try:
        task_queue().enqueue(
            spec.func,
            task.id,
            job_id=task.id,
            description=f"{name} for user {user.id}",
            job_timeout=current_app.config["TASK_TIMEOUT"],
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            on_failure=Callback(on_job_failure),
            on_stopped=Callback(on_job_stopped),
        )
    except redis.exceptions.RedisError as exc:
        # Pages that showed the `queued` bar learn it ended (best effort: Redis may be the fault).
        publish(task, status="failed", message="The task queue is unavailable; nothing was started.")
        db.session.delete(task)
        db.session.commit()
        raise QueueUnavailable(str(exc)) from exc
    return task
