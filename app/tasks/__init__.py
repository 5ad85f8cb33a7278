"""Task views: launch, history, status API, cancel, download."""
from flask import Blueprint

bp = Blueprint("tasks", __name__)

from app.tasks import display, routes  # noqa: E402,F401
