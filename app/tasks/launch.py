"""Launching a job kind from a view: the same flashes for every kind, in the kind's own words."""
from __future__ import annotations

from flask import flash
from flask_login import current_user

from app.jobs import JOBS, JobSpec, QueueUnavailable, TaskAlreadyActive, launch_task, launchers
from app.models import Task
from app.tasks import bp


def launch_and_flash(name: str, task_id: str | None = None) -> Task | None:
    """Launch a task of kind `name` for the caller and flash the outcome; None if it was refused."""
    spec = JOBS[name]
    try:
        task = launch_task(current_user, name, task_id)
    except TaskAlreadyActive as exc:
        flash(exc.refusal(), "warning")
        return None
    except QueueUnavailable:
        flash(f"The task queue is unavailable right now, so no {spec.what} was started. Please try again shortly.",
              "danger")
        return None
    flash(spec.launched, "info")
    return task


@bp.app_template_global("job_kind")
def job_kind(name: str) -> JobSpec | None:
    """Templates ask the registry about a task's kind (`job_kind(task.name).path`), never compare names."""
    return JOBS.get(name)


@bp.app_template_global("job_launchers")
def job_launchers() -> list[tuple[str, list[tuple[str, JobSpec]]]]:
    """The profile's launch forms, grouped by lane."""
    return launchers()
