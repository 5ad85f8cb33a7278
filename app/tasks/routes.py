"""Task views. Every task route checks the task belongs to the caller (404 otherwise)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from flask import (abort, current_app, flash, g, has_request_context, jsonify, redirect, render_template, request,
                   send_file, session, url_for)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from werkzeug.wrappers import Response

from app.extensions import db
from app.expiry import is_expired
from app.jobs.retention import delete_export_file
from app.jobs import redis_client
from app.jobs.export import result_file
from app.limits import exports_per_user
from app.main.forms import EmptyForm
from app.models import Task, TaskStatus
from app.progress import CANCELED, end_task, task_payload
from app.security import page_number, safe_next
from app.tasks import bp
from app.tasks.display import download_name
from app.tasks.launch import launch_and_flash

log = logging.getLogger(__name__)


def owned_task_or_404(task_id: str) -> Task:
    """The caller's task, or 404 (also for other users' tasks: their ids are not confirmed)."""
    task = db.session.get(Task, task_id)
    if task is None or task.user_id != current_user.id:
        abort(404, description=_("No such task."))
    return task


def _back(default: str) -> Response:
    """Redirect (303) to a same-site `next` form field, else to default."""
    return redirect(safe_next(request.form.get("next"), default), code=303)


@bp.route("/export_posts", methods=["POST"])
@login_required
@exports_per_user
def export_posts() -> Response:
    """Launch the export of the caller's posts."""
    launch_and_flash("export_posts")
    return _back(url_for("main.user", username=current_user.username))


@bp.route("/tasks")
@login_required
def history() -> str:
    """The caller's tasks, newest first."""
    page = db.paginate(
        sa.select(Task).where(Task.user_id == current_user.id).order_by(Task.created_at.desc()),
        page=page_number(), per_page=50, error_out=True,
    )
    return render_template("tasks/history.html", title=_("Your tasks"), tasks=page, form=EmptyForm())


@bp.route("/api/tasks")
@login_required
def api_tasks() -> Response:
    """The caller's 50 newest tasks, newest first."""
    tasks = db.session.scalars(
        sa.select(Task).where(Task.user_id == current_user.id).order_by(Task.created_at.desc()).limit(50)
    ).all()
    return jsonify(tasks=[task_payload(t) for t in tasks])


# The owner check is in the WHERE: one indexed Core row, the statement built once (as app/sockets.py's
# snapshot). The ORM get it replaces was 14 % of a poll's CPU in py-spy, for a row only read.
_tasks = Task.__table__
OWNED_TASK_SQL = sa.select(*_tasks.c).where(_tasks.c.id == sa.bindparam("task_id"),
                                            _tasks.c.user_id == sa.bindparam("user_id"))


@bp.route("/api/tasks/<task_id>")
@login_required
def api_task(task_id: str) -> Response:
    """A task's state, as in the `task_progress` event (404 for another user's task, as for none)."""
    row = db.session.connection().execute(OWNED_TASK_SQL, {"task_id": task_id, "user_id": current_user.id}).first()
    if row is None:
        abort(404, description=_("No such task."))
    return jsonify(task_payload(Task(**row._mapping)))  # transient: never added to the session


@bp.route("/tasks/<task_id>/cancel", methods=["POST"])
@login_required
def cancel(task_id: str) -> Response | tuple[str, int]:
    """Cancel a queued or running task; 409 once it has ended or is being delivered."""
    owned_task_or_404(task_id)
    # One conditional UPDATE decides between this cancel and the job's own completion.
    if end_task(task_id, TaskStatus.CANCELED, CANCELED, allow_delivering=False) is None:
        message = _("This task has already ended (or its result is being delivered), so it cannot be canceled.")
        return render_template("errors/error.html", code=409, message=message), 409
    stop_job(task_id)
    session["ended_task"] = task_id  # the page we go back to still shows this task's bar, now "Canceled"
    flash(_("The task was canceled."), "task-info")
    return _back(url_for("tasks.history"))


def stop_job(task_id: str) -> None:
    """Take a canceled task's job off the queue, or stop it if it runs; best effort."""
    connection = redis_client()
    try:
        job = Job.fetch(task_id, connection=connection)
        if job.get_status() == JobStatus.STARTED:
            send_stop_job_command(connection, task_id)
        else:
            job.cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass  # already gone or just finishing: the job notices the canceled row itself
    except redis.exceptions.RedisError:
        log.warning("task %s canceled, but Redis is unreachable; its job will notice the row", task_id)


@bp.route("/tasks/<task_id>/download")
@login_required
def download(task_id: str) -> Response:
    """The export file of a finished export, to its owner only."""
    task = owned_task_or_404(task_id)
    if is_expired(task):  # issue 9: retention (or the owner) deleted it
        return render_template("tasks/expired.html", title=_("Export expired"), task=task), 410
    if not task.has_download:
        abort(404, description=_("This task has no file to download."))
    path = result_file(task)  # result_path is relative to EXPORT_DIR, wherever this machine mounts it
    if path is None:
        abort(404, description=_("The export file is no longer available."))
    return send_file(path, mimetype="application/json", as_attachment=True,
                     download_name=download_name(current_user.username, task))


@bp.route("/tasks/<task_id>/delete", methods=["POST"])
@login_required
def delete_export(task_id: str) -> Response:
    """Delete the caller's finished export file now, before retention would (issue 9)."""
    task = owned_task_or_404(task_id)
    if not task.has_download:
        abort(404, description=_("This task has no file to delete."))
    delete_export_file(task)
    flash(_("The export file was deleted."), "info")
    return _back(url_for("tasks.history"))


@bp.app_context_processor
def inject_active_tasks() -> dict[str, Any]:
    """Every page renders a live bar for each of the user's unfinished tasks.

    A task just canceled or just launched is shown once more whatever its state. When the launched
    one has already ended, its "has started" flash is stale (`stale_task_flashes`): the bar says more.
    """
    if not has_request_context() or not current_user.is_authenticated:
        return {"active_tasks": [], "stale_task_flashes": False}
    shown = Task.status.in_(TaskStatus.active())
    just_ended = session.pop("ended_task", None)  # set by cancel
    launched = session.pop("launched_task", None)  # set by launch_and_flash
    for task_id in (just_ended, launched):
        if task_id:
            shown = shown | (Task.id == task_id)
    tasks = db.session.scalars(
        sa.select(Task).where(Task.user_id == current_user.id, shown).order_by(Task.created_at)
    ).all()
    stale = any(task.id == launched and task.status not in TaskStatus.active() for task in tasks)
    return {"active_tasks": tasks, "stale_task_flashes": stale}
