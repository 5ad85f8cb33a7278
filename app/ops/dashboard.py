"""rq-dashboard under /admin/rq, for admins only, with Task rows that agree with what it does.

rq-dashboard is a Flask blueprint with its own config (RQ_DASHBOARD_*) and a basic-auth option we
do not use: our login decides. Anyone but an admin gets 404 (the dashboard is never shown).
Its JavaScript posts without our CSRF token, so its blueprint is exempt from CSRFProtect and its
POSTs must instead come from this site (Origin/Referer), which a cross-site form cannot fake.
Requeue needs no hook here: the job itself reopens its failed row when it runs again
(app.progress.ProgressPublisher.start); a job deleted here ends its task failed with a reason.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, request
from werkzeug.wrappers import Response

from app.web_extensions import csrf
from app.models import TaskStatus
from app.ops.access import admin_or_404

PREFIX = "/admin/rq"
BLUEPRINT = "rq_dashboard"
DELETED = "An operator deleted this task's job from the task queue."


def init_dashboard(app: Flask) -> None:
    """Mount rq-dashboard on our Redis, behind the admin check."""
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    csrf.exempt(rq_dashboard.blueprint)
    setup_rq_connection(app)
    app.before_request(guard)
    app.after_request(reconcile_deleted_job)


def same_site(req) -> bool:
    """Whether a POST says it comes from one of this site's pages."""
    source = req.headers.get("Origin") or req.headers.get("Referer") or ""
    return bool(source) and urlsplit(source).netloc == req.host


def guard() -> None:
    """Admins only; the dashboard's POSTs only from our own pages."""
    if request.blueprint != BLUEPRINT:
        return
    admin_or_404()
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_site(request):
        abort(403, description="Dashboard actions must come from the dashboard's own pages.")


def reconcile_deleted_job(response: Response) -> Response:
    """After the dashboard deleted a job, end its task (if still active) failed, saying why."""
    if request.endpoint == f"{BLUEPRINT}.delete_job_view" and response.status_code == 200:
        from app.progress import end_task

        end_task(request.view_args["job_id"], TaskStatus.FAILED, DELETED)
    return response
