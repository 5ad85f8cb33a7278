"""Rate limits (Flask-Limiter, counters in Redis): failed logins, exports, registrations.

When Redis is down each web process falls back to counting in its own memory (Flask-Limiter's
in-memory fallback) and goes back to Redis once it answers again: every limit keeps holding
(per process rather than per deployment) and no page waits on a dead Redis. Logins stay limited,
pages and exports are not refused because of the outage.
"""
from __future__ import annotations

from typing import Callable

from flask import Flask, current_app, g, request
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user
from werkzeug.wrappers import Response

from app.i18n import N_

limiter = Limiter(key_func=get_remote_address)


def init_app(app: Flask) -> None:
    """Bind the limiter: Redis storage, a moving window, in-memory fallback."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"])
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 2})
    app.config.setdefault("RATELIMIT_STRATEGY", "moving-window")  # "10 in any 15 minutes", not per clock quarter
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "microblog-limits")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)  # Retry-After on every 429
    limiter.init_app(app)
    # One limiter per process in production; tests build several apps in turn, and an app whose Redis
    # was down must not leave the next one counting in memory.
    limiter._storage_dead = False
    limiter._key_prefix = app.config["RATELIMIT_KEY_PREFIX"]  # Flask-Limiter keeps the first app's otherwise


def _config(name: str):
    """A limit string read from the config when the request is checked (tests may change it)."""
    return lambda: current_app.config[name]


def _failed_login(response: Response) -> bool:
    """Only wrong passwords count; successful logins never do."""
    return response.status_code == 401


def _login_account() -> str:
    """The account being tried, however its name is cased."""
    return "account:" + (request.form.get("username") or "").strip().lower()[:64]


def _user() -> str:
    """The logged-in user (these views require a login)."""
    return f"user:{current_user.id}"


def _export_launched(_response: Response) -> bool:
    """A click that did not start an export (one already running, queue down) does not count."""
    return bool(g.get("task_launched"))


def _wait_message(what: str) -> Callable[[], str]:
    """A readable 429 text, in the language of the request that hit the limit."""
    return lambda: _(what) + " " + _("Please wait a while and try again.")


login_per_account = limiter.limit(
    _config("LOGIN_RATE_LIMIT"), key_func=_login_account, methods=["POST"], deduct_when=_failed_login,
    scope="login-account",
    error_message=_wait_message(N_("Too many failed sign-in attempts for this account, so signing in to it is "
                                   "paused (even with the right password).")))
login_per_address = limiter.limit(
    _config("LOGIN_ADDRESS_RATE_LIMIT"), methods=["POST"], deduct_when=_failed_login, scope="login-address",
    error_message=_wait_message(N_("Too many failed sign-in attempts from your network address.")))
# Every attempt counts, not only successes: this also bounds probing which names and emails exist.
register_per_address = limiter.limit(
    _config("REGISTER_RATE_LIMIT"), methods=["POST"], scope="register",
    error_message=_wait_message(N_("Too many registrations from your network address.")))
exports_per_user = limiter.limit(
    _config("EXPORT_RATE_LIMIT"), key_func=_user, deduct_when=_export_launched, scope="export",
    error_message=_wait_message(N_("You have started the most exports allowed in an hour.")))
# Each import stores an upload of up to 20 MB and runs a job: bounded like exports.
imports_per_user = limiter.limit(
    _config("IMPORT_RATE_LIMIT"), key_func=_user, methods=["POST"], deduct_when=_export_launched, scope="import",
    error_message=_wait_message(N_("You have started the most imports allowed in an hour.")))
