"""Reading a user's posts oldest first, fast whatever the planner's statistics, and encoding them.

PostgreSQL: one server-side cursor over `ORDER BY timestamp, id` in a read-only transaction (a cursor
plans for the first rows, so it walks the (user_id, timestamp, id) index in order even right after a
bulk insert, where keyset batches fell back to a bitmap scan and a sort per batch). The database
formats each timestamp (`to_char`), so Python never builds a datetime.
SQLite (and others): keyset batches, each in its own short transaction; SQLite formats the stored
timestamp text itself.
Either way a dropped connection resumes after the last post read, and memory is one batch.

This module runs in RQ work horses: no eventlet here.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Iterator

import orjson
import sqlalchemy as sa

from app.extensions import db
from app.models import Post, isoformat_z

Batch = list[tuple[str, int, str]]  # (timestamp "YYYY-MM-DDTHH:MM:SS.ffffffZ", id, body)
PG_STAMP = "YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\""
RETRIES = 4


def iter_batches(user_id: int, batch_size: int) -> Iterator[Batch]:
    """The user's posts oldest first in batches; reconnects after a dropped connection."""
    last: tuple[datetime, int] | None = None
    failures = 0
    while True:
        try:
            reader = _postgresql if db.engine.dialect.name == "postgresql" else _keyset
            for rows in reader(user_id, last, batch_size):
                failures = 0
                last = (datetime.fromisoformat(rows[-1][0][:-1]), rows[-1][1])
                yield rows
            return
        except sa.exc.OperationalError:
            db.session.rollback()
            failures += 1
            if failures >= RETRIES:
                raise
            time.sleep(0.5 * 2 ** (failures - 1))


def _after(stmt: sa.Select, last: tuple[datetime, int] | None) -> sa.Select:
    """Only the posts after the last one read (a resumed read)."""
    posts = Post.__table__
    return stmt if last is None else stmt.where(sa.tuple_(posts.c.timestamp, posts.c.id) > last)


def _postgresql(user_id: int, last: tuple[datetime, int] | None, batch_size: int) -> Iterator[Batch]:
    """One server-side cursor, streamed in order, in a read-only snapshot."""
    posts = Post.__table__
    stmt = _after(sa.select(sa.func.to_char(posts.c.timestamp, PG_STAMP), posts.c.id, posts.c.body)
                  .where(posts.c.user_id == user_id).order_by(posts.c.timestamp, posts.c.id), last)
    with db.engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True,
            stream_results=True, yield_per=batch_size) as conn:
        for partition in conn.execute(stmt).partitions():
            yield [tuple(row) for row in partition]


def _keyset(user_id: int, last: tuple[datetime, int] | None, batch_size: int) -> Iterator[Batch]:
    """Keyset batches, each its own short transaction (SQLite: never hold a read across progress writes)."""
    posts = Post.__table__
    text = db.engine.dialect.name == "sqlite"
    stamp = _sqlite_stamp(posts.c.timestamp) if text else posts.c.timestamp
    while True:
        stmt = _after(sa.select(stamp, posts.c.id, posts.c.body).where(posts.c.user_id == user_id)
                      .order_by(posts.c.timestamp, posts.c.id).limit(batch_size), last)
        with db.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        yield rows if text else [(isoformat_z(ts), ident, body) for ts, ident, body in rows]
        last = (datetime.fromisoformat(rows[-1][0][:-1]) if text else rows[-1][0], rows[-1][1])


def _sqlite_stamp(column: sa.ColumnElement) -> sa.ColumnElement[str]:
    """SQLite's stored "YYYY-MM-DD HH:MM:SS[.ffffff]" as the export's text, built by SQLite itself."""
    iso = sa.func.replace(sa.type_coerce(column, sa.String), " ", "T")
    return sa.case((sa.func.length(iso) == 19, iso + ".000000Z"), else_=iso + "Z")


def encode(rows: Batch) -> bytes:
    """The batch as `{"body": …, "timestamp": …}` objects joined by commas (orjson: C speed, UTF-8)."""
    return orjson.dumps([{"body": body, "timestamp": stamp} for stamp, _, body in rows])[1:-1]
