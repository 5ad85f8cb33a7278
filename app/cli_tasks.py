"""Operator commands: `flask set-admin` and `flask tasks list|show|retry|fail|prune` (issue 9)."""
from __future__ import annotations

from datetime import datetime, timezone

import click
import redis
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.extensions import db
from app.i18n import N_
from app.models import Task, TaskStatus, User

STUCK = N_("Ended by an operator: the task was stuck.")  # translated per task when `fail` writes it


def _user(username: str) -> User:
    """The user named `username` (any letter case), or a clear error."""
    user = db.session.scalar(sa.select(User).where(sa.func.lower(User.username) == username.lower()))
    if user is None:
        raise click.ClickException(f"No user named {username!r}.")
    return user


def _task(task_id: str) -> Task:
    """The task with this id, or a clear error."""
    task = db.session.get(Task, task_id)
    if task is None:
        raise click.ClickException(f"No task {task_id!r}.")
    return task


@click.command("set-admin")
@click.argument("username")
@click.option("--revoke", is_flag=True, help="Take the admin role away instead.")
@with_appcontext
def set_admin(username: str, revoke: bool) -> None:
    """Make USERNAME an admin (or, with --revoke, no longer one)."""
    user = _user(username)
    user.is_admin = not revoke
    db.session.commit()
    click.echo(f"{user.username} is {'no longer' if revoke else 'now'} an admin.")


@click.group("tasks")
def tasks_group() -> None:
    """Inspect and steer background tasks."""


def _row(task: Task, username: str) -> str:
    """One line of `tasks list`."""
    created = task.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{task.id}  {task.status.value:<8} {task.progress:>3}%  {task.name:<14} {username:<16} {created}  {task.message or ''}"


@tasks_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in TaskStatus]), help="Only tasks in this status.")
@click.option("--user", "username", help="Only this user's tasks.")
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
@with_appcontext
def list_tasks(status: str | None, username: str | None, limit: int) -> None:
    """List tasks, newest first."""
    stmt = sa.select(Task, User.username).join(User, Task.user_id == User.id).order_by(Task.created_at.desc())
    if status:
        stmt = stmt.where(Task.status == TaskStatus(status))
    if username:
        stmt = stmt.where(Task.user_id == _user(username).id)
    rows = db.session.execute(stmt.limit(limit)).all()
    if not rows:
        click.echo("No tasks.")
    for task, name in rows:
        click.echo(_row(task, name))


@tasks_group.command("show")
@click.argument("task_id")
@with_appcontext
def show_task(task_id: str) -> None:
    """Show a task's row, its RQ job and the job's last heartbeat."""
    from app.jobs import redis_client
    from app.progress import task_payload

    task = _task(task_id)
    user = db.session.get(User, task.user_id)
    click.echo(f"task        {task.id}\nuser        {user.username} (id {user.id})")
    for key, value in task_payload(task).items():
        if key != "task_id":
            click.echo(f"{key:<12}{'' if value is None else value}")
    try:
        job = Job.fetch(task.id, connection=redis_client())
    except NoSuchJobError:
        click.echo("job         none in Redis (never enqueued, expired, or lost with Redis)")
        return
    except redis.exceptions.RedisError as exc:
        click.echo(f"job         Redis unreachable ({exc})")
        return
    beat = job.last_heartbeat
    age = f" ({(datetime.now(timezone.utc) - beat.replace(tzinfo=beat.tzinfo or timezone.utc)).total_seconds():.0f} s ago)" if beat else ""
    click.echo(f"job         {job.get_status().value} on {job.origin}, worker {job.worker_name or '-'}")
    click.echo(f"heartbeat   {beat.isoformat() if beat else '-'}{age}")
    if job.exc_info:
        click.echo("job error   " + job.exc_info.strip().splitlines()[-1])


@tasks_group.command("retry")
@click.argument("task_id")
@with_appcontext
def retry_task(task_id: str) -> None:
    """Launch a new task of the same kind for the same user (the same rules as the button)."""
    from app.jobs import QueueUnavailable, TaskAlreadyActive, job_spec, launch_task

    task = _task(task_id)
    if job_spec(task.name).upload:  # its input was the user's upload, deleted once the task ended
        raise click.ClickException(
            f"Task {task_id} ({task.name}) ran on a file the user uploaded, and that file is not kept "
            "after the task ends, so it cannot be launched again from here. Ask the user to upload the file again.")
    user = db.session.get(User, task.user_id)
    try:
        new = launch_task(user, task.name)
    except TaskAlreadyActive:
        raise click.ClickException(f"{user.username} already has a {task.name} task queued or running.") from None
    except QueueUnavailable as exc:
        raise click.ClickException(f"The task queue is unavailable: {exc}") from None
    click.echo(f"Launched task {new.id} ({task.name}) for {user.username}.")


@tasks_group.command("fail")
@click.argument("task_id")
@click.option("--message", default=STUCK, show_default=True, help="What the user reads.")
@with_appcontext
def fail_task(task_id: str, message: str) -> None:
    """End a stuck (queued or running) task as failed, with one terminal event."""
    from app.jobs.callbacks import remove_partial_export
    from app.progress import end_task
    from app.tasks.routes import stop_job

    _task(task_id)
    from flask_babel import gettext

    from app.i18n import task_locale

    with task_locale(task_id):  # the default message is the user's to read, in the task's language
        ended = end_task(task_id, TaskStatus.FAILED, gettext(message) if message == STUCK else message)
    if ended is None:
        raise click.ClickException(f"Task {task_id} has already ended.")
    stop_job(task_id)  # a job that still runs must not go on and mail a result
    remove_partial_export(task_id)
    click.echo(f"Task {task_id} ended failed: {message}")


@tasks_group.command("prune")
@with_appcontext
def prune() -> None:
    """Apply retention now: delete export files older than EXPORT_RETENTION_DAYS."""
    from app.jobs.retention import prune_expired

    total = 0
    while (pruned := prune_expired()):
        total += pruned
    click.echo(f"Deleted {total} expired export file(s) (retention: {current_app.config['EXPORT_RETENTION_DAYS']} days).")
