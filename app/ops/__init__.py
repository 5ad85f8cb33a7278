"""Operations: health, metrics and the RQ dashboard, for the people who run the deployment."""
from flask import Blueprint

bp = Blueprint("ops", __name__)

from app.ops import routes  # noqa: E402,F401  (registers the views)
