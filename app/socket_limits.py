"""Socket limits: a budget of client packets per connection, refused sockets closed at once, and
at most MAX_SOCKETS_PER_USER concurrent sockets per user across every server.

The app expects nothing from a client but its namespace CONNECT, so a connection that keeps
sending is cut off before its packets cost a green thread each. The per-user count lives in Redis
(a sorted set of socket ids scored by when their server last vouched for them), so sockets held by
a server that died age out instead of locking their user out.
"""
from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import engineio.exceptions
import redis
from flask import Flask, current_app, request
from flask_socketio import ConnectionRefusedError

from app.admission import DisconnectPacing
from app.extensions import socketio

log = logging.getLogger(__name__)

BURST = 10  # client packets a connection may send at once (CONNECT, a reconnect or two)
REFILL_PER_SECOND = 1.0
REFRESH_EVERY = 60  # seconds between a server's re-vouching for its sockets
STALE_AFTER = 3 * REFRESH_EVERY  # a socket nobody vouched for this long belongs to a dead server

_budgets: dict[str, list[float]] = {}  # eio sid -> [tokens, last refill time]
# Socket id -> what its close must undo in Redis: its Redis client and the (command, key) removals,
# the first always the ZREM from its user's count (whose key the refresher re-scores). One map for
# every socket this process holds: app.sockets adds the logout set's SREM and pops it on close.
open_sockets: dict[str, tuple[redis.Redis, list[tuple[str, str]]]] = {}
_refresher_started = False


def user_sockets_key(user_id: int) -> str:
    """Redis sorted set of a user's open socket ids, on every server (named like the rate limits)."""
    return f"{current_app.config['RATELIMIT_KEY_PREFIX']}:user-sockets:{user_id}"


def init_app(app: Flask) -> None:
    """Guard the engine.io server this app's Socket.IO server runs on (once per server object)."""
    eio = getattr(socketio.server, "eio", None)
    if eio is None or getattr(eio, "_microblog_guarded", False):
        return
    trigger = eio._trigger_event
    pacing = DisconnectPacing()
    # Closes noticed by the connection's own reader (the client left): paced. Not a ping timeout,
    # which the relay itself can notice while sending (it must never wait at a gate), nor a close
    # the server asked for (logout, a refusal).
    paced = {eio.reason.CLIENT_DISCONNECT, eio.reason.TRANSPORT_CLOSE, eio.reason.TRANSPORT_ERROR}

    def guarded(event: str, *args: Any, **kwargs: Any) -> Any:
        # Checked before engine.io spawns a green thread for the packet: a flood costs a dict lookup.
        if event == "message" and not _within_budget(args[0]):
            log.warning("socket %s sent more packets than a client of this app does: closing it", args[0])
            # engine.io's reader loop ends on this error and drops the connection (TCP included),
            # even when the client never reads the close frame.
            raise engineio.exceptions.SocketIsClosedError()
        if event == "disconnect":
            _budgets.pop(args[0], None)
            if len(args) > 1 and args[1] in paced:
                return pacing(lambda: trigger(event, *args, **kwargs))
        return trigger(event, *args, **kwargs)

    eio._trigger_event = guarded
    eio._microblog_guarded = True


def _within_budget(eio_sid: str) -> bool:
    """Token bucket per connection: BURST packets, then REFILL_PER_SECOND."""
    now = time.monotonic()
    budget = _budgets.get(eio_sid)
    if budget is None:
        budget = _budgets[eio_sid] = [float(BURST), now]
    budget[0] = min(float(BURST), budget[0] + (now - budget[1]) * REFILL_PER_SECOND)
    budget[1] = now
    if budget[0] < 1:
        return False
    budget[0] -= 1
    return True


def refuse(reason: str) -> NoReturn:
    """Refuse the connecting socket with a reason, then close its engine.io connection too."""
    eio_sid = socketio.server.manager.eio_sid_from_sid(request.sid, "/")
    if eio_sid:
        # After the handler returns, so the CONNECT_ERROR with the reason goes out first.
        socketio.start_background_task(_close, eio_sid)
    raise ConnectionRefusedError(reason)


def _close(eio_sid: str) -> None:
    """Close an engine.io connection that may already be gone."""
    try:
        socketio.server.eio.disconnect(eio_sid)
    except KeyError:
        pass


def admit(user_id: int, sid: str, logout_set: tuple[str, int] | None = None) -> None:
    """Count this socket for its user; refuse it past MAX_SOCKETS_PER_USER (fail open without Redis).

    `logout_set` (key, TTL): the Redis set of its login session's sockets, which logout closes; the
    socket joins it in the same round trip as the count (two round trips were a sixth of a connect).
    """
    limit = current_app.config["MAX_SOCKETS_PER_USER"]
    key = user_sockets_key(user_id)
    now = time.time()
    client = current_app.extensions["redis"]
    removals = [("zrem", key)]
    try:
        pipe = client.pipeline().zremrangebyscore(key, 0, now - STALE_AFTER).zadd(key, {sid: now}).zcard(key)
        pipe.expire(key, STALE_AFTER)
        if logout_set:
            pipe.sadd(logout_set[0], sid).expire(*logout_set)
            removals.append(("srem", logout_set[0]))
        count = pipe.execute()[2]
        if count > limit:
            undo = client.pipeline()
            for command, removed_from in removals:
                getattr(undo, command)(removed_from, sid)
            undo.execute()
            refuse(f"Too many open connections for this account (at most {limit}); close some tabs.")
    except redis.exceptions.RedisError:
        log.warning("socket count unavailable (Redis down): socket %s admitted uncounted", sid)
    # Noted at once, the moment it counts: whatever fails later in the connect, its close undoes this.
    open_sockets[sid] = (client, removals)
    _start_refresher(current_app._get_current_object())


def _start_refresher(app: Flask) -> None:
    """Once per process: keep vouching for this server's sockets so they do not age out."""
    global _refresher_started
    if not _refresher_started:
        _refresher_started = True
        socketio.start_background_task(_refresh_forever, app)


def _refresh_forever(app: Flask) -> None:
    """Every REFRESH_EVERY seconds, re-score this process's sockets, a few hundred per round trip."""
    while True:
        socketio.sleep(REFRESH_EVERY)
        try:
            client = app.extensions["redis"]
            items = [(sid, removals[0][1]) for sid, (_, removals) in list(open_sockets.items())]
            for start in range(0, len(items), 500):
                pipe = client.pipeline(transaction=False)
                now = time.time()
                for sid, key in items[start:start + 500]:
                    pipe.zadd(key, {sid: now}, xx=True)
                    pipe.expire(key, STALE_AFTER)
                pipe.execute()
                socketio.sleep(0)
        except redis.exceptions.RedisError:
            log.warning("could not refresh the socket counts; retrying in %s s", REFRESH_EVERY)
