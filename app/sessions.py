"""Login sessions that really end: one `user_session` row per login, checked on every request.

The session cookie and the remember-me cookie carry only the row's random id (as Flask-Login's
user id), so deleting the row at logout makes every copy of both cookies worthless. The database,
not Redis, holds the rows: pages keep working while Redis is down. The same id names the login's
sockets (`sock_key`), so ending a session also closes its sockets on whichever server holds them.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, session
from flask_login import login_user, logout_user

from app.extensions import db
from app.models import User, UserSession, utcnow

log = logging.getLogger(__name__)

# last_seen is written at most this often per session: not one UPDATE per request.
TOUCH_EVERY = timedelta(minutes=5)


def _max_idle() -> timedelta:
    """A session unused this long is over (the remember-me cookie lasts as long)."""
    return current_app.config["REMEMBER_COOKIE_DURATION"]


# Built once, as app/sockets.py's snapshot: a request or a connect only binds the id (building the
# statement and its cache key anew was a third of loading the user, py-spy of /api/tasks/<id>).
SESSION_USER_SQL = (sa.select(UserSession.last_seen, User).join(User, User.id == UserSession.user_id)
                    .where(UserSession.id == sa.bindparam("session_id")))
SESSION_ROW_SQL = (sa.select(UserSession.user_id, UserSession.last_seen)
                   .where(UserSession.id == sa.bindparam("session_id")))


def load_session_user(session_id: str) -> User | None:
    """The user of a live login session, or None (unknown, ended or idle too long)."""
    if not session_id or len(session_id) > 64:
        return None
    found = db.session.execute(SESSION_USER_SQL, {"session_id": session_id}).first()
    if found is None:
        return None
    last_seen, user = found
    now = utcnow()
    if last_seen < now - _max_idle():
        _write(sa.delete(UserSession).where(UserSession.id == session_id))
        return None
    if last_seen < now - TOUCH_EVERY:
        _write(sa.update(UserSession).where(UserSession.id == session_id).values(last_seen=now))
    user.session_id = session_id
    return user


def live_session_user_id(session_id: str) -> int | None:
    """The user id of a live login session, or None: `load_session_user`'s rule in one Core query.

    For the socket connect path, which needs only the id (no ORM objects, no bookkeeping write).
    """
    if not session_id or len(session_id) > 64:
        return None
    with db.engine.connect() as connection:
        row = connection.execute(SESSION_ROW_SQL, {"session_id": session_id}).first()
    if row is None or row.last_seen < utcnow() - _max_idle():
        return None
    return row.user_id


def _write(statement: sa.Executable) -> None:
    """Run a small bookkeeping write in its own transaction, never inside the view's one."""
    try:
        with db.engine.begin() as connection:
            connection.execute(statement)
    except sa.exc.SQLAlchemyError:
        log.warning("could not update a login session's bookkeeping", exc_info=True)


def start_session(user: User, remember: bool = False) -> str:
    """Log `user` in on a brand-new session: new id, new cookies, new CSRF token."""
    # Clearing first renews the CSRF token and drops whatever a visitor's session held before.
    session.clear()
    row = UserSession(id=secrets.token_urlsafe(32), user_id=user.id)
    db.session.add(row)
    # Sessions of this user that idled out are removed here, where the user is logging in anyway.
    db.session.execute(sa.delete(UserSession).where(UserSession.user_id == user.id,
                                                    UserSession.last_seen < utcnow() - _max_idle()))
    db.session.commit()
    user.session_id = row.id
    login_user(user, remember=remember)
    session["sock_key"] = row.id  # names this login's sockets (app/sockets.py), so logout closes them
    return row.id


def end_current_session(user: User) -> None:
    """Logout: delete this session's row, close its sockets, drop its cookies."""
    from app.sockets import disconnect_session_sockets

    session_id = user.session_id
    if session_id:
        db.session.execute(sa.delete(UserSession).where(UserSession.id == session_id))
        db.session.commit()
    disconnect_session_sockets(session.get("sock_key") or session_id)
    session.clear()
    logout_user()  # after the clear: it leaves the note that makes Flask-Login delete the remember-me cookie


def end_other_sessions(user_id: int, keep: str | None = None) -> int:
    """End every login session of a user but `keep` (log out everywhere, password change)."""
    from app.sockets import disconnect_session_sockets

    query = sa.select(UserSession.id).where(UserSession.user_id == user_id)
    if keep:
        query = query.where(UserSession.id != keep)
    ids = list(db.session.scalars(query))
    if ids:
        db.session.execute(sa.delete(UserSession).where(UserSession.id.in_(ids)))
        db.session.commit()
    for session_id in ids:
        disconnect_session_sockets(session_id)
    return len(ids)
