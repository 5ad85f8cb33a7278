"""Error pages: HTML for pages, JSON for /api."""
from flask import abort, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.errors import bp
from app.extensions import db


def _wants_json() -> bool:
    """API callers get JSON errors."""
    return request.path.startswith("/api/")


@bp.before_app_request
def refuse_nul_characters() -> None:
    """PostgreSQL cannot compare or store NUL (SQLite would store it): refuse it before any query."""
    if "\x00" in request.path:
        abort(404)
    if any("\x00" in value for _, value in request.values.items(multi=True)):
        abort(400, description="The request contains a NUL character.")


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    """A form without a valid CSRF token changes nothing."""
    message = "The form expired or was not sent from this site; reload the page and try again."
    if _wants_json():
        return jsonify(error="csrf", message=message), 400
    return render_template("errors/error.html", code=400, message=message), 400


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Any 4xx/5xx raised by a view."""
    if _wants_json():
        return jsonify(error=error.name, message=error.description), error.code
    return render_template("errors/error.html", code=error.code, message=error.description), error.code


@bp.app_errorhandler(500)
def internal_error(error: Exception):
    """An unexpected failure: roll back so the next request starts clean."""
    db.session.rollback()
    message = "Something went wrong on our side. Please try again."
    if _wants_json():
        return jsonify(error="Internal Server Error", message=message), 500
    return render_template("errors/error.html", code=500, message=message), 500
