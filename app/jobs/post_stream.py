"""Reading a user's posts oldest first, fast whatever the planner's statistics, and encoding them.

PostgreSQL: one server-side cursor over `ORDER BY timestamp, id` in a read-only transaction (a cursor
plans for the first rows, so it walks the (user_id, timestamp, id) index in order even right after a
bulk insert, where keyset batches fell back to a bitmap scan and a sort per batch). The database
formats each timestamp (`to_char`), so Python never builds a datetime.
SQLite: keyset batches, each in its own short transaction. The stored timestamp text becomes the
export's with two string operations, no datetime.
Both read on the driver's own cursor, not SQLAlchemy's rows: for a million posts those cost more
than the database's work (SQLite 3.2 s against 1.4 s; PostgreSQL 5.1 s against 2.6 s).
Others (MariaDB): keyset batches through SQLAlchemy.
Either way a dropped connection resumes after the last post read, and memory is one batch.

This module runs in RQ work horses: no eventlet here.
"""
from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any, Iterator

import orjson
import sqlalchemy as sa

from app.extensions import db
from app.models import Post, isoformat_z

Batch = list[tuple[str, int, str]]  # (timestamp "YYYY-MM-DDTHH:MM:SS.ffffffZ", id, body)
Resumable = tuple[Batch, tuple[Any, int]]  # a batch, and the key a resumed read starts after
PG_STAMP = "YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\""
RETRIES = 4


def iter_batches(user_id: int, batch_size: int) -> Iterator[Batch]:
    """The user's posts oldest first in batches; reconnects after a dropped connection."""
    readers = {"postgresql": _postgresql, "sqlite": _sqlite}
    last: tuple[Any, int] | None = None  # where a resumed read starts, in its reader's own terms
    failures = 0
    while True:
        try:
            reader = readers.get(db.engine.dialect.name, _keyset)
            for rows, last in reader(user_id, last, batch_size):
                failures = 0
                yield rows
            return
        # The readers use the driver's cursor, whose errors SQLAlchemy does not wrap.
        except (sa.exc.OperationalError, db.engine.dialect.loaded_dbapi.OperationalError):
            db.session.rollback()
            failures += 1
            if failures >= RETRIES:
                raise
            time.sleep(0.5 * 2 ** (failures - 1))


def _after(stmt: sa.Select, last: tuple[datetime, int] | None) -> sa.Select:
    """Only the posts after the last one read (a resumed read)."""
    posts = Post.__table__
    return stmt if last is None else stmt.where(sa.tuple_(posts.c.timestamp, posts.c.id) > last)


def _postgresql(user_id: int, last: tuple[datetime, int] | None, batch_size: int) -> Iterator[Resumable]:
    """One server-side cursor (psycopg2's named cursor), streamed in order, in a read-only snapshot.

    On the driver's cursor, as on SQLite: for a million posts SQLAlchemy's streamed rows took 5.1 s
    where psycopg2's took 2.6 s, encoding included.
    """
    table = Post.__tablename__
    sql = (f'SELECT to_char("timestamp", %s), id, body FROM "{table}" WHERE user_id = %s'
           + ('' if last is None else ' AND ("timestamp", id) > (%s, %s)') + ' ORDER BY "timestamp", id')
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True) as conn:
        cursor = conn.connection.driver_connection.cursor(name="export_posts")  # named: server-side
        try:
            cursor.execute(sql, (PG_STAMP, user_id) + (() if last is None else last))
            while rows := cursor.fetchmany(batch_size):
                yield rows, (datetime.fromisoformat(rows[-1][0][:-1]), rows[-1][1])
        finally:
            # A connection the server dropped cannot close its cursor: the error that dropped it is
            # the one to raise (and retry), not this one.
            with contextlib.suppress(db.engine.dialect.loaded_dbapi.Error):
                cursor.close()


def _sqlite(user_id: int, last: tuple[str, int] | None, batch_size: int) -> Iterator[Resumable]:
    """Keyset batches on sqlite3's cursor, each its own short read (never held across progress writes).

    The key is the stored text itself, so the next batch starts exactly where the index left off.
    """
    table = Post.__tablename__
    first = f"SELECT timestamp, id, body FROM {table} WHERE user_id = ? ORDER BY timestamp, id LIMIT ?"
    after = (f"SELECT timestamp, id, body FROM {table} WHERE user_id = ? AND (timestamp, id) > (?, ?) "
             "ORDER BY timestamp, id LIMIT ?")
    while True:
        with db.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(first if last is None else after,
                               (user_id, batch_size) if last is None else (user_id, *last, batch_size))
                rows = cursor.fetchall()
            finally:
                cursor.close()
        if not rows:
            return
        last = (rows[-1][0], rows[-1][1])
        # "YYYY-MM-DD HH:MM:SS[.ffffff]" as stored -> "YYYY-MM-DDTHH:MM:SS.ffffffZ"
        yield [(ts.replace(" ", "T") + (".000000Z" if len(ts) == 19 else "Z"), ident, body)
               for ts, ident, body in rows], last
        if len(rows) < batch_size:  # the last batch: no need to ask again for nothing
            return


def _keyset(user_id: int, last: tuple[datetime, int] | None, batch_size: int) -> Iterator[Resumable]:
    """Keyset batches through SQLAlchemy, each its own short transaction."""
    posts = Post.__table__
    while True:
        stmt = _after(sa.select(posts.c.timestamp, posts.c.id, posts.c.body).where(posts.c.user_id == user_id)
                      .order_by(posts.c.timestamp, posts.c.id).limit(batch_size), last)
        with db.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        last = (rows[-1][0], rows[-1][1])
        yield [(isoformat_z(ts), ident, body) for ts, ident, body in rows], last
        if len(rows) < batch_size:  # the last batch: no need to ask again for nothing
            return


def encode(rows: Batch) -> bytes:
    """The batch as `{"body": …, "timestamp": …}` objects joined by commas (orjson: C speed, UTF-8)."""
    return orjson.dumps([{"body": body, "timestamp": stamp} for stamp, _, body in rows])[1:-1]
