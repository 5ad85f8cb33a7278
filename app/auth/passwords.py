"""Password hashing that does not freeze the event loop.

werkzeug's scrypt costs ~100 ms of CPU and never yields: under eventlet every socket of the
process would stall during each login. When the process is patched, hash in eventlet's thread pool.
"""
from __future__ import annotations

import secrets
import sys
from typing import Callable, TypeVar

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from app.models import User

T = TypeVar("T")


def _offload(fn: Callable[..., T], *args: object) -> T:
    """Run fn in a real OS thread when the web server runs on eventlet (or gevent)."""
    eventlet = sys.modules.get("eventlet")
    if eventlet is not None and eventlet.patcher.is_monkey_patched("thread"):
        from eventlet import tpool

        return tpool.execute(fn, *args)
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("threading"):
        import gevent  # SOCKETIO_ASYNC_MODE=gevent: the hub's pool of real threads does the same

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


def set_password(user: User, password: str) -> None:
    """Hash and store a password."""
    _offload(user.set_password, password, current_app.config["PASSWORD_HASH_METHOD"])


def check_password(user: User, password: str) -> bool:
    """Verify a password."""
    return _offload(user.check_password, password)


_DUMMY_HASHES: dict[str, str] = {}


def check_login(user: User | None, password: str) -> bool:
    """Verify a login; an unknown user costs one hash too, so timing does not tell who exists."""
    if user is not None:
        return check_password(user, password)
    method = current_app.config["PASSWORD_HASH_METHOD"]
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash(secrets.token_hex(16), method=method)
    _offload(check_password_hash, _DUMMY_HASHES[method], password)
    return False
