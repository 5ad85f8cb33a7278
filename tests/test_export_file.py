"""The export's file on SQLite and PostgreSQL: the exact format, every post once, oldest first."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.jobs.export import iter_posts, write_posts
from app.models import Post
from tests.harness import read_posts

BODIES = ['quote " and \\ backslash', "line\nbreak", "é ünïcode", "emoji 🎉", "tab\tand <html>", "\u2028"]


class Percent:
    """Collects the percentages write_posts reports."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def advance(self, percent: int) -> None:
        self.seen.append(percent)

    def advance_count(self, current: int, total: int, share: int = 100) -> None:
        """What write_posts calls: `current` of `total` posts fill `share` percent of the bar."""
        self.advance(current * share // max(total, current) if total else 0)


def test_file_matches_the_database_exactly(app, make_user, make_posts, tmp_path):
    """Bodies of every kind, equal timestamps and a whole second round-trip in the documented format."""
    alice = make_user("alice")
    make_user("bob")
    with app.app_context():
        whole = datetime(2026, 5, 1, 12, 0, 0)  # microsecond 0 is still written as .000000
        db.session.add_all([Post(body=b, timestamp=whole, user_id=alice.id) for b in BODIES])
        db.session.commit()
    make_posts(alice.id, 7)
    path = tmp_path / "posts.json"
    with app.app_context():
        assert write_posts(alice.id, path, Percent()) == len(BODIES) + 7
    data = json.loads(path.read_bytes())
    assert list(data) == ["posts"]
    assert data["posts"] == read_posts(app.config["SQLALCHEMY_DATABASE_URI"], "alice")
    assert data["posts"][0] == {"body": BODIES[0], "timestamp": "2026-05-01T12:00:00.000000Z"}
    assert all(len(p["timestamp"]) == 27 and p["timestamp"].endswith("Z") for p in data["posts"])


def test_batches_cover_every_post_once_in_order(app, make_user, make_posts):
    """Small batches (many edges) still give every post once, oldest first."""
    alice = make_user("alice")
    make_posts(alice.id, 23)
    with app.app_context():
        batches = list(iter_posts(alice.id, batch_size=5))
    bodies = [body for batch in batches for _, _, body in batch]
    assert bodies == [f"Seed post {i} of 23" for i in range(1, 24)]


def test_empty_export(app, make_user, tmp_path):
    """A user without posts gets an empty list."""
    alice = make_user("alice")
    path = tmp_path / "posts.json"
    with app.app_context():
        assert write_posts(alice.id, path, Percent()) == 0
    assert json.loads(path.read_bytes()) == {"posts": []}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_stamps_without_microseconds_and_a_resumed_read(app, make_user, monkeypatch):
    """SQLite's reader (sqlite3's own cursor): a timestamp stored without microseconds by another
    writer is still written with .000000Z and in index order, and a read that loses its connection
    mid-way resumes after the last post it gave, with no post twice or missing."""
    from app.jobs import post_stream

    alice = make_user("alice")
    rows = [("2026-05-01 12:00:00", "whole second, stored short"), ("2026-05-01 12:00:00.000000", "zero micro a"),
            ("2026-05-01 12:00:00.000000", "zero micro b"), ("2026-05-01 12:00:00.250000", "a quarter"),
            ("2026-05-01 12:00:01.000001", "later")]
    with app.app_context():
        for stamp, body in reversed(rows):  # ids against time order: the order must come from the index
            db.session.execute(sa.text("INSERT INTO post (body, timestamp, user_id) VALUES (:b, :t, :u)"),
                               {"b": body, "t": stamp, "u": alice.id})
        db.session.commit()
        real = post_stream._sqlite
        calls = []

        def dropping(user_id, last, batch_size):  # the first read dies after two batches
            calls.append(last)
            for n, got in enumerate(real(user_id, last, batch_size)):
                if len(calls) == 1 and n == 2:
                    raise sqlite3.OperationalError("disk I/O error")  # the driver's own error
                yield got

        monkeypatch.setattr(post_stream, "_sqlite", dropping)
        monkeypatch.setattr(post_stream.time, "sleep", lambda s: None)
        batches = list(post_stream.iter_batches(alice.id, 1))
    got = [(stamp, body) for batch in batches for stamp, _, body in batch]
    assert got == [("2026-05-01T12:00:00.000000Z", "whole second, stored short"),
                   ("2026-05-01T12:00:00.000000Z", "zero micro b"),  # same stamp: the lower id first
                   ("2026-05-01T12:00:00.000000Z", "zero micro a"),
                   ("2026-05-01T12:00:00.250000Z", "a quarter"),
                   ("2026-05-01T12:00:01.000001Z", "later")]
    assert len(calls) == 2 and calls[1][0] == "2026-05-01 12:00:00.000000"  # resumed from the stored text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_read_resumes_after_its_connection_is_killed(app, make_user, make_posts):
    """PostgreSQL's reader (one server-side cursor): its backend is terminated after two batches; the
    read reconnects and goes on after the last post it gave, every post once, in order."""
    import psycopg2

    alice = make_user("alice")
    make_posts(alice.id, 23)
    bodies = []
    with app.app_context():
        batches = post_stream_batches(alice.id, 5)
        for _ in range(2):
            bodies += [body for _, _, body in next(batches)]
        admin = psycopg2.connect(db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert cur.fetchone()[0] >= 1  # the reader's own connection among them
        admin.close()
        bodies += [body for batch in batches for _, _, body in batch]
    assert bodies == [f"Seed post {i} of 23" for i in range(1, 24)]


def post_stream_batches(user_id: int, size: int):
    """The export's reader (app.jobs.post_stream), as a generator the test can pause between batches."""
    from app.jobs import post_stream

    return post_stream.iter_batches(user_id, size)
