"""Task views: launch, history, status API, cancel, download, the import's upload."""
from flask import Blueprint

bp = Blueprint("tasks", __name__)

from app.tasks import display, routes  # noqa: E402,F401
from app.tasks import launch, uploads  # noqa: E402,F401

bp.record(launch.launch_routes)  # after every module's own views: kinds without one get a generic route
