"""Error pages: HTML for pages, JSON for /api."""
from flask import abort, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.errors import bp
from app.extensions import db
from app.i18n import N_

# werkzeug's own descriptions (an `abort(404)` without one of ours), marked so they are translated.
WERKZEUG_DESCRIPTIONS = (
    N_("The browser (or proxy) sent a request that this server could not understand."),
    N_("You don't have the permission to access the requested resource. It is either read-protected or not "
       "readable by the server."),
    N_("The requested URL was not found on the server. If you entered the URL manually please check your "
       "spelling and try again."),
    N_("The method is not allowed for the requested URL."),
    N_("A conflict happened while processing the request. The resource might have been modified while the "
       "request was being processed."),
    N_("The requested URL is no longer available on this server and there is no forwarding address. If you "
       "followed a link from a foreign page, please contact the author of this page."),
    N_("The data value transmitted exceeds the capacity limit."),
    N_("This user has exceeded an allotted request count. Try again later."),
)


def _wants_json() -> bool:
    """API callers get JSON errors."""
    return request.path.startswith("/api/")


@bp.before_app_request
def refuse_nul_characters() -> None:
    """PostgreSQL cannot compare or store NUL (SQLite would store it): refuse it before any query."""
    if "\x00" in request.path:
        abort(404)
    if any("\x00" in value for _, value in request.values.items(multi=True)):
        abort(400, description=_("The request contains a NUL character."))


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    """A form without a valid CSRF token changes nothing."""
    message = _("The form expired or was not sent from this site; reload the page and try again.")
    if _wants_json():
        return jsonify(error="csrf", message=message), 400
    return render_template("errors/error.html", code=400, message=message), 400


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Any 4xx/5xx raised by a view."""
    message = _(error.description) if error.description in WERKZEUG_DESCRIPTIONS else error.description
    if _wants_json():
        return jsonify(error=error.name, message=message), error.code
    return render_template("errors/error.html", code=error.code, message=message), error.code


@bp.app_errorhandler(500)
def internal_error(error: Exception):
    """An unexpected failure: roll back so the next request starts clean."""
    db.session.rollback()
    message = _("Something went wrong on our side. Please try again.")
    if _wants_json():
        return jsonify(error="Internal Server Error", message=message), 500
    return render_template("errors/error.html", code=500, message=message), 500
