"""Where the socket server relays progress: authenticated connections, one room per user, snapshots.

Workers publish `task_progress` to the room `user:<id>` through Redis; the server relays it.
Here the server only decides who may connect, which room they join, and what a (re)connecting
page needs to be current at once.
"""
from __future__ import annotations

import logging
from collections import deque
from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask, current_app, request, session
from flask_login import current_user
from flask_socketio import emit, join_room

from app import socket_limits
from app.admission import admitted
from app.extensions import db, socketio
from app.models import Task, TaskStatus, utcnow
from app.ops.process_metrics import SOCKETS_CONNECTED
from app.sessions import live_session_user_id
from app.progress import EVENT, task_payload, user_room

log = logging.getLogger(__name__)

RECENT = timedelta(minutes=10)
SESSION_SOCKETS_TTL = 24 * 3600


# Built once: a connect only binds values (py-spy: building the statements was a tenth of a connect).
_tasks = Task.__table__
SNAPSHOT_SQL = (
    sa.select(*_tasks.c)
    .where(_tasks.c.user_id == sa.bindparam("user_id"),
           sa.or_(_tasks.c.status.in_(TaskStatus.active()), _tasks.c.finished_at >= sa.bindparam("recent")))
    .order_by(_tasks.c.created_at)
)


def snapshot(user_id: int) -> list[dict[str, Any]]:
    """Latest state of the user's tasks that are active or ended in the last 10 minutes."""
    # Core on a pooled connection, one indexed query: no ORM session work for the many users
    # who have no such task (py-spy: the ORM path was a third of a connect's hub time).
    with db.engine.connect() as conn:
        rows = conn.execute(SNAPSHOT_SQL, {"user_id": user_id, "recent": utcnow() - RECENT}).all()
    return [task_payload(Task(**row._mapping)) for row in rows]  # transient: never added to a session


def connecting_user_id() -> int | None:
    """The id of the logged-in user opening a socket, or None.

    The session carries a login-session id (app/sessions.py); one primary-key Core query on
    `user_session` confirms that login is still live (not logged out, not idle too long) without
    the ORM User that Flask-Login's loader would build for nothing. A session Flask-Login has not
    filled in yet (a remember-me cookie alone) goes through its full loader.
    """
    session_id = session.get("_user_id")
    if session_id is None:
        return current_user.id if current_user.is_authenticated else None
    return live_session_user_id(str(session_id))


def outdated(payload: dict[str, Any]) -> bool:
    """Whether this server already relayed a newer event of the task than this snapshot row.

    The room is joined before the snapshot is read (so nothing published in between is missed):
    a live event relayed meanwhile is newer than the row we read, and has reached the socket.
    """
    check = getattr(socketio.server.manager, "is_outdated", None)  # no message queue: nothing relayed
    return bool(check and check(payload))


def sent_snapshot(sids: list[str], payload: dict[str, Any]) -> None:
    """Tell the relay these sockets now show this row, so older live events in flight skip them."""
    note = getattr(socketio.server.manager, "note_snapshot", None)
    if note:
        note(sids, payload)


def session_sockets_key(sock_key: str) -> str:
    """Redis set of the socket ids opened by one login session (for logout)."""
    return f"microblog:session-sockets:{sock_key}"


@socketio.on("connect")
def on_connect(auth: Any = None) -> None:
    """Accept logged-in users only, join their room, and bring the page current."""
    try:  # connects are admitted a few at a time (app/admission.py): the relays run between them
        user_id = connecting_user_id()
        if user_id is None:
            socket_limits.refuse("Log in to receive task progress.")
        sock_key = session.get("sock_key")  # names the login session's sockets, so that logout closes them
        logout_set = (session_sockets_key(sock_key), SESSION_SOCKETS_TTL) if sock_key else None
        socket_limits.admit(user_id, request.sid, logout_set)  # MAX_SOCKETS_PER_USER, across servers
        SOCKETS_CONNECTED.inc()  # issue 9: /metrics
        try:
            join_room(user_room(user_id))
            socketio.sleep(0)  # let queued relays run between the steps of a connect
            # Straight to this socket, not through Redis: the snapshot must arrive even if Redis is down.
            for payload in snapshot(user_id):
                if not outdated(payload):  # checked right before the emit: no other greenlet runs between
                    sent_snapshot([request.sid], payload)
                    emit(EVENT, payload, to=request.sid, ignore_queue=True)
        except Exception:
            # A failed connect is refused, and refused sockets get no close event: undo the count now.
            on_disconnect(request.sid)
            raise
    finally:
        admitted(request.environ)


def on_disconnect(sid: str, _reason: Any = None) -> None:
    """A socket closed: it no longer counts for its user, and logout no longer needs to close it.

    Registered on python-socketio's server directly (app.init_socketio), not through Flask-SocketIO:
    its wrapper pushes a request context and decodes the session cookie again for every close, half
    of a close's cost (py-spy), for what `on_connect` already noted in `socket_limits.open_sockets`.
    """
    work = socket_limits.open_sockets.pop(sid, None)
    if work is None:
        return  # refused at connect: never counted
    SOCKETS_CONNECTED.dec()  # issue 9: /metrics
    client, removals = work
    for command, key in removals:
        _Forgetter.add(client, command, key, sid)


class _Forgetter:
    """Redis removals of closed sockets (ZREM from the user's count, SREM from the login session's
    set), sent as one pipeline per batch by a background task.

    A storm of disconnects then costs the hub a list append each, not a Redis round trip each.
    A lost removal only leaves a dead sid in a key with a TTL: the count ages it out
    (socket_limits.STALE_AFTER), and logout's disconnect of it is a no-op.
    """

    pending: deque[tuple[redis.Redis, str, str, str]] = deque()
    running = False
    BATCH = 100  # a pipeline of 100 is ~2 ms of packing on the hub; 500 was ~10 ms

    @classmethod
    def add(cls, client: redis.Redis, command: str, key: str, sid: str) -> None:
        """Queue one removal ("zrem" or "srem"); start the flusher if it is not running."""
        cls.pending.append((client, command, key, sid))
        if not cls.running:
            cls.running = True
            socketio.start_background_task(cls.flush)

    @classmethod
    def flush(cls) -> None:
        """Send the queued removals in pipelines of at most BATCH until none is left."""
        try:
            while cls.pending:
                pipes: dict[int, Any] = {}
                for _ in range(min(cls.BATCH, len(cls.pending))):
                    client, command, key, sid = cls.pending.popleft()
                    getattr(pipes.setdefault(id(client), client.pipeline(transaction=False)), command)(key, sid)
                for pipe in pipes.values():
                    try:
                        pipe.execute()
                    except redis.exceptions.RedisError:
                        log.warning("could not forget closed sockets (Redis unavailable)")
                socketio.sleep(0)
        finally:
            cls.running = False
        if cls.pending and not cls.running:  # queued after the loop ended (threaded mode)
            cls.running = True
            socketio.start_background_task(cls.flush)


def disconnect_session_sockets(sock_key: str | None) -> int:
    """Close every socket a login session opened, on whichever server holds it."""
    if not sock_key:
        return 0
    client = current_app.extensions["redis"]
    key = session_sockets_key(sock_key)
    try:
        sids = [s.decode() for s in client.smembers(key)]
        client.delete(key)
    except redis.exceptions.RedisError:
        log.warning("could not list the sockets of a session being logged out")
        return 0
    for sid in sids:
        # Through the message queue when the socket lives on another server.
        socketio.server.disconnect(sid, namespace="/")
    return len(sids)


def resync_all_users(app: Flask) -> None:
    """Re-send the snapshot to every user connected to this server (after a Redis gap)."""
    with app.app_context():
        rooms = socketio.server.manager.rooms.get("/", {})
        for room in [r for r in rooms if isinstance(r, str) and r.startswith("user:")]:
            try:
                for payload in snapshot(int(room.split(":", 1)[1])):
                    if not outdated(payload):
                        sent_snapshot([sid for sid, _ in socketio.server.manager.get_participants("/", room)],
                                      payload)
                        socketio.emit(EVENT, payload, to=room, ignore_queue=True)
            except sa.exc.SQLAlchemyError:
                db.session.rollback()
                log.exception("re-sync of %s failed", room)
