"""Each job and each RQ callback runs with a database session of its own, removed when it ends.

The worker parent runs RQ's callbacks (on_stopped, the work-horse-killed hook) and the sweep, then
forks the next work horse: a session or transaction left open there would be inherited by the
child, connection and all (SQLite forbids carrying a connection across fork; PostgreSQL's would be
shared by two processes). Removing the session after each unit of work leaves nothing to inherit.
"""
from __future__ import annotations

import functools
from typing import Callable, ParamSpec, TypeVar

from app.extensions import db

P = ParamSpec("P")
R = TypeVar("R")


def own_session(fn: Callable[P, R]) -> Callable[P, R]:
    """Run fn with a fresh session and remove it afterwards, whatever happens."""
    @functools.wraps(fn)  # RQ finds callbacks by dotted name: the wrapper keeps fn's
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        db.session.remove()  # whatever an earlier step of this process left is not ours to continue
        try:
            return fn(*args, **kwargs)
        finally:
            db.session.remove()

    return wrapper
