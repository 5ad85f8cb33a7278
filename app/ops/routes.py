"""Operations views: /healthz (anyone) and /metrics (admins or the metrics token)."""
from __future__ import annotations

from flask import abort, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.wrappers import Response

from app.web_extensions import csrf
from app.ops import bp
from app.ops.access import has_metrics_token, is_admin
from app.ops.health import health
from app.ops.metrics import render


@bp.route("/healthz")
@csrf.exempt
def healthz() -> tuple[Response, int]:
    """Database and Redis reachable? Live workers counted. 503 with the reason otherwise."""
    body, code = health()
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, code


@bp.route("/metrics")
def metrics() -> Response:
    """Prometheus text format for the whole deployment."""
    if not (has_metrics_token() or is_admin()):
        abort(404)
    return Response(render(current_app._get_current_object()), content_type=CONTENT_TYPE_LATEST)
