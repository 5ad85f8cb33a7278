"""`flask` commands."""
from __future__ import annotations

import io
import time
from datetime import datetime, timedelta
from typing import Iterator

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from app.extensions import db
from app.models import Post, User, count_new_posts, utcnow

SEED_CHUNK = 50_000
SEED_COPY_CHUNK = 2_000  # rows formatted at a time for COPY's stream: ~80 KB
SEED_MAX = 50_000_000


def seed_rows(count: int, chunk: int = SEED_CHUNK) -> Iterator[list[tuple[str, datetime]]]:
    """Yield (body, timestamp) rows in chunks, one second apart, ending now (oldest first)."""
    start = utcnow() - timedelta(seconds=count)
    second = timedelta(seconds=1)
    for offset in range(0, count, chunk):
        stamp = start + second * offset
        rows = []
        for i in range(offset + 1, min(offset + chunk, count) + 1):
            stamp += second
            rows.append((f"Seed post {i} of {count}", stamp))
        yield rows


def insert_rows(user_id: int, count: int) -> None:
    """Bulk insert: the driver's executemany on SQLite (~2x faster than Core), COPY on PostgreSQL, Core elsewhere."""
    count_new_posts(db.session, user_id, count)
    if db.engine.dialect.name == "sqlite":
        connection = db.session.connection()
        sql = f"INSERT INTO {Post.__tablename__} (body, timestamp, user_id) VALUES (?, ?, ?)"
        for rows in seed_rows(count):
            # The text SQLAlchemy's SQLite DateTime type writes (microseconds always present), so
            # seeded rows sort and read back exactly like posts made through the app.
            connection.exec_driver_sql(sql, [(body, f"{ts:%Y-%m-%d %H:%M:%S.%f}", user_id) for body, ts in rows])
    elif db.engine.dialect.name == "postgresql":
        _copy_rows(user_id, count)
    else:
        for rows in seed_rows(count):
            db.session.execute(sa.insert(Post), [{"body": b, "timestamp": t, "user_id": user_id} for b, t in rows])


def _copy_rows(user_id: int, count: int) -> None:
    """PostgreSQL's COPY FROM STDIN, as one stream, in the session's transaction."""
    cursor = db.session.connection().connection.dbapi_connection.cursor()
    sql = f'COPY "{Post.__tablename__}" (body, "timestamp", user_id) FROM STDIN'
    # Seed bodies hold no tab, newline or backslash: COPY's text format needs no escaping.
    lines = ("".join(f"{body}\t{ts}\t{user_id}\n" for body, ts in rows) for rows in seed_rows(count, SEED_COPY_CHUNK))
    try:
        # One COPY fed chunk by chunk as psycopg2 reads: the server indexes one chunk while Python
        # formats the next (one COPY per chunk left each side idle half the time: 2/3 of the rate).
        cursor.copy_expert(sql, _Stream(lines), size=1 << 16)
    finally:
        cursor.close()


class _Stream(io.RawIOBase):
    """A read-only file over an iterator of strings, encoded on demand (what `copy_expert` reads)."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        """Yes: a stream to read from."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for -1); b"" at the end."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk.encode()
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


# ignore_unknown_options: `-5` reaches COUNT (and its clear message) instead of "No such option".
@click.command("seed-posts", context_settings={"ignore_unknown_options": True})
@click.argument("username")
@click.argument("count")
@with_appcontext
def seed_posts(username: str, count: str) -> None:
    """Add COUNT posts to the existing user USERNAME, fast (bulk insert)."""
    try:
        number = int(count)
    except ValueError:
        raise click.BadParameter(f"COUNT must be a whole number, got {count!r}.", param_hint="COUNT") from None
    if not 1 <= number <= SEED_MAX:
        raise click.BadParameter(f"COUNT must be between 1 and {SEED_MAX:,}, got {number}.", param_hint="COUNT")
    user_id = db.session.scalar(sa.select(User.id).where(User.username == username))
    if user_id is None:
        raise click.ClickException(f"No user named {username!r}. Register it first.")
    began = time.perf_counter()
    insert_rows(user_id, number)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # Fresh statistics: the planner otherwise plans the user's pages for an empty table.
        db.session.execute(sa.text(f'ANALYZE "{Post.__tablename__}"'))
        db.session.commit()
    elapsed = time.perf_counter() - began
    click.echo(f"Added {number:,} posts to {username} in {elapsed:.2f} s ({number / elapsed:,.0f} posts/s).")
