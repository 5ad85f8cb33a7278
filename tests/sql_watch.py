"""Which SQL statements a piece of code runs, as the database driver receives them."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine.default import CACHE_MISS


def compiled_anew(statement: str, context: Any) -> bool:
    """A statement SQLAlchemy compiled for this execution (not found in its engine's cache)."""
    return context is not None and context.cache_hit == CACHE_MISS


def reads_task_rows(statement: str, context: Any) -> bool:
    """A SELECT from the task table."""
    return statement.lstrip().upper().startswith("SELECT") and "FROM task" in statement


@contextmanager
def statements_run(engine: sa.Engine, keep: Callable[[str, Any], bool]) -> Iterator[list[str]]:
    """The statements `engine` runs inside the block that `keep` picks, in order."""
    kept: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if keep(statement, context):
            kept.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield kept
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
