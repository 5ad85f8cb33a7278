"""Browser-facing protections: security headers, safe redirects, bounded input.

`init_app` is called once from the factory; the helpers are used by every view that redirects
to a user-supplied `next` or reads a page number.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import Flask, abort, current_app, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

# Scripts and styles come from our own static files only (templates carry no inline script or
# style); Bootstrap's CSS uses data: SVG icons; sockets go back to this origin ('self' covers ws/wss).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HSTS = "max-age=31536000; includeSubDomains"
MAX_PAGE = 1_000_000


def init_app(app: Flask) -> None:
    """Add the headers to every response and the handlers for malformed input."""
    from app import limits, socket_limits

    limits.init_app(app)
    socket_limits.init_app(app)
    app.after_request(add_security_headers)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(OverflowError, bad_input)
    app.register_error_handler(sa.exc.DataError, bad_input)


def add_security_headers(response: Response) -> Response:
    """CSP and friends on pages; no caching of anything private."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Frame-Options", "DENY")
    if current_app.config["PUBLIC_URL"].startswith("https://"):
        headers.setdefault("Strict-Transport-Security", HSTS)
    if not request.path.startswith("/static/") and (response.mimetype == "text/html" or _signed_in()):
        # A page may hold a CSRF token or private data: never keep it in a shared or back/forward cache.
        headers["Cache-Control"] = "no-store"
    return response


def _signed_in() -> bool:
    """Whether the request came with a live login (without loading the user again if not yet loaded)."""
    try:
        return bool(current_user and current_user.is_authenticated)
    except Exception:  # an error page rendered before the user could be loaded
        return False


def safe_next(target: str | None, default: str | None = None) -> str:
    """`target` if it is a path on this site, else `default` (home): the one check for every `next`."""
    fallback = default or url_for("main.index")
    if not target or not isinstance(target, str) or len(target) > 2048:
        return fallback
    # Browsers drop tabs/newlines and treat a backslash as a slash: "/\t/evil" and "/\\evil" are "//evil".
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in target):
        return fallback
    for candidate in (target, unquote(target)):
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc or not candidate.startswith("/") or candidate.startswith("//"):
            return fallback
        if any(ord(c) < 0x20 or c == "\\" for c in candidate):
            return fallback
    return target


def page_number() -> int:
    """The `page` argument (default 1); a number out of any sane range is a 400, not a database error."""
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= MAX_PAGE:
        abort(400, description=_("The page number must be between 1 and %(max)s.", max=MAX_PAGE))
    return page


def too_large(error: RequestEntityTooLarge) -> tuple[str | Response, int]:
    """413 with a message, never the refused body echoed back."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    message = _("The request is too large: at most %(size)s MB can be sent.", size=limit // (1024 * 1024))
    if request.path.startswith("/api/"):
        from flask import jsonify

        return jsonify(error="Request Entity Too Large", message=message), 413
    return render_template("errors/error.html", code=413, message=message), 413


def bad_input(error: Exception) -> tuple[str, int]:
    """A number too large for the database (page=10**20...) is the client's mistake: 400."""
    from app.extensions import db

    db.session.rollback()
    return render_template("errors/error.html", code=400,
                           message=_("The request contains a value out of range.")), 400
