"""The export's file on SQLite and PostgreSQL: the exact format, every post once, oldest first."""
from __future__ import annotations

import json
from datetime import datetime

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
