"""`/healthz`: can this process reach the database and Redis, and how many workers are alive?

Polled every second by load balancers, so it is cheap: one `SELECT 1` on a pooled connection, one
PING and one read of RQ's worker registry on a client with a 1 s timeout. Every check is bounded:
under eventlet a socket wait is cooperative (sockets are patched, psycopg2 is greened), and a
green Timeout stops a check that would otherwise wait on a silent peer; SQLite is a local C call.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import redis
import sqlalchemy as sa
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Worker

from app.extensions import db

CHECK_TIMEOUT = 1.5  # seconds per check: an outage shows within 2 s of a poll


class CheckTimeout(Exception):
    """A check took longer than CHECK_TIMEOUT."""


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Stop the enclosed check after `seconds` when running on green threads (no-op otherwise)."""
    mode = current_app.config.get("SOCKETIO_ASYNC_MODE")
    if mode == "eventlet":
        import eventlet  # only ever imported in the web process, which already runs on it

        with eventlet.Timeout(seconds, CheckTimeout(f"no answer within {seconds} s")):
            yield
    elif mode == "gevent":
        import gevent

        with gevent.Timeout(seconds, CheckTimeout(f"no answer within {seconds} s")):
            yield
    else:  # threads: the socket timeouts below bound the Redis check
        yield


def health_redis(app: Flask) -> redis.Redis:
    """A Redis client just for health checks: short timeouts, no retries, its own small pool."""
    client = app.extensions.get("health_redis")
    if client is None:
        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=1, socket_timeout=1,
                                      retry=Retry(NoBackoff(), 0), max_connections=4)
        app.extensions["health_redis"] = client
    return client


def reason(exc: BaseException) -> str:
    """A short, credential-free reason for a failed check."""
    inner = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}"[:200]


def check_database() -> str:
    """'ok' if the database answers SELECT 1, else the reason."""
    try:
        with bounded(CHECK_TIMEOUT):
            db.session.execute(sa.text("SELECT 1"))
            db.session.commit()
        return "ok"
    except (sa.exc.SQLAlchemyError, OSError, CheckTimeout) as exc:
        db.session.rollback()
        return reason(exc)


def check_redis(app: Flask) -> tuple[str, int | None]:
    """('ok', live workers) if Redis answers, else (reason, None)."""
    client = health_redis(app)
    try:
        with bounded(CHECK_TIMEOUT):
            client.ping()
            return "ok", count_live_workers(client)
    except (redis.exceptions.RedisError, OSError, CheckTimeout) as exc:
        return reason(exc), None


def count_live_workers(client: redis.Redis) -> int:
    """Workers whose heartbeat key is still alive (RQ drops it worker_ttl + 60 s after the last beat)."""
    return len(Worker.all(connection=client))


def health() -> tuple[dict[str, Any], int]:
    """The /healthz body and status code."""
    database = check_database()
    redis_state, workers = check_redis(current_app._get_current_object())
    healthy = database == "ok" and redis_state == "ok"
    body = {"status": "ok" if healthy else "error", "database": database, "redis": redis_state,
            "workers": workers}
    return body, 200 if healthy else 503
