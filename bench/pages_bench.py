"""Pages benchmark (5): requests/s and 5xx at 200 concurrent for home, /explore, a profile and /tasks."""
from __future__ import annotations

import json
import subprocess
import sys

import sqlalchemy as sa

from config import normalize_database_url
from tests.harness import ROOT, Stack, seed


def load(stack: Stack, cookie: str, path: str, concurrency: int, seconds: float) -> dict:
    """One bench.http_load process against one path."""
    out = subprocess.run([sys.executable, "-m", "bench.http_load", stack.url, cookie, "--paths", path,
                          "--concurrency", str(concurrency), "--seconds", str(seconds)],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=seconds + 120)
    result = json.loads(out.stdout)
    result["5xx"] = sum(v for k, v in result["status"].items() if k.startswith("5") or k == "error")
    return result


def deep_cursor(stack: Stack, username: str, depth: int) -> str:
    """The `before` cursor of the post `depth` posts from the newest (set-up only: OFFSET is fine here)."""
    engine = sa.create_engine(normalize_database_url(stack.database_url))
    with engine.connect() as conn:
        ts, ident = conn.execute(sa.text(
            'SELECT p.timestamp, p.id FROM post p JOIN "user" u ON u.id = p.user_id WHERE u.username = :u '
            "ORDER BY p.timestamp DESC, p.id DESC LIMIT 1 OFFSET :d"), {"u": username, "d": depth}).one()
    engine.dispose()
    if isinstance(ts, str):
        from datetime import datetime
        ts = datetime.fromisoformat(ts)
    return f"{ts.isoformat(timespec='microseconds')}_{ident}"


def big_user(stack: Stack, username: str, posts: int) -> None:
    """Give a user `posts` posts (the bulk path of `flask seed-posts`)."""
    seed(stack.database_url, username, posts)

