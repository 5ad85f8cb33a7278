"""Launching a job kind from a view: the same flashes for every kind, in the kind's own words."""
from __future__ import annotations

from typing import Callable

from flask import flash, g, session, url_for
from flask_babel import gettext as _
from flask.blueprints import BlueprintSetupState
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.jobs import JOBS, JobSpec, QueueUnavailable, TaskAlreadyActive, launch_task, launchers
from app.models import Task
from app.tasks import bp


def launch_and_flash(name: str, task_id: str | None = None) -> Task | None:
    """Launch a task of kind `name` for the caller and flash the outcome; None if it was refused."""
    spec = JOBS[name]
    try:
        task = launch_task(current_user, name, task_id)
    except TaskAlreadyActive as exc:
        flash(exc.refusal(), "task-warning")  # task-*: a flash the live state may replace (tasks.js)
        return None
    except QueueUnavailable:
        flash(_("The task queue is unavailable right now, so no %(what)s was started. Please try again shortly.",
                what=spec.what), "danger")
        return None
    g.task_launched = True  # counts towards the launch rate limit (app/limits.py)
    # The page we redirect to shows this task's bar even if it has already ended by then (a bad
    # import fails in milliseconds): the user sees how it ended, not a "has started" and nothing.
    session["launched_task"] = task.id
    flash(str(spec.launched), "task-info")
    return task


def _back(default: str) -> Response:
    """Redirect (303) to a same-site `next` form field, else to default (as routes.py does)."""
    from app.tasks.routes import _back as back  # routes.py imports this module

    return back(default)


@bp.app_template_global("job_kind")
def job_kind(name: str) -> JobSpec | None:
    """Templates ask the registry about a task's kind (`job_kind(task.name).path`), never compare names."""
    return JOBS.get(name)


@bp.app_template_global("job_launchers")
def job_launchers() -> list[tuple[str, list[tuple[str, JobSpec]]]]:
    """The profile's launch forms, grouped by lane."""
    return launchers()


def _launcher(name: str) -> Callable[[], Response]:
    """The view of a kind that needs nothing but a click: launch it, then back to where the form was."""
    @login_required
    def launch() -> Response:
        launch_and_flash(name)
        return _back(url_for("main.user", username=current_user.username))

    launch.__doc__ = f"Launch a {JOBS[name].what} for the caller."
    return launch


def launch_routes(state: BlueprintSetupState) -> None:
    """A POST route at `path` for every kind without a view of its own: a new kind needs no view code.

    Recorded last (app/tasks/__init__.py), so it runs after the views the modules declare.
    """
    for name, spec in JOBS.items():
        if spec.path and not spec.upload and f"{bp.name}.{name}" not in state.app.view_functions:
            state.add_url_rule(spec.path, endpoint=name, view_func=_launcher(name), methods=["POST"])
