"""Who may see operations pages: admins, and for /metrics also the bearer of METRICS_TOKEN."""
from __future__ import annotations

import hmac

from flask import abort, current_app, request
from flask_login import current_user


def is_admin() -> bool:
    """Whether the caller is a logged-in admin."""
    return bool(current_user.is_authenticated and getattr(current_user, "is_admin", False))


def has_metrics_token() -> bool:
    """Whether the request carries `Authorization: Bearer $METRICS_TOKEN` (never true while it is unset)."""
    token = current_app.config.get("METRICS_TOKEN")
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


def admin_or_404() -> None:
    """404 for everyone but admins: the page's existence is not confirmed to others."""
    if not is_admin():
        abort(404)
