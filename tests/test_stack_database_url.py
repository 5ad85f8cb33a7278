"""`DATABASE_URL=postgresql://… make run` on a fresh clone, as the README's PostgreSQL advice says:
with a Redis already running at REDIS_URL nothing else creates var/, and the SMTP sink needs it."""
from __future__ import annotations

import signal
from pathlib import Path

from tests.harness import Browserless, RedisServer, new_database_url
from tests.test_stack import RunningStack, assert_nothing_left


def test_make_run_with_postgresql_and_a_running_redis(tmp_path: Path) -> None:
    """The stack comes up on PostgreSQL (migrated by make run), serves a user, and Ctrl-C ends it all."""
    url, drop = new_database_url("postgresql", tmp_path)
    redis_server = RedisServer(tmp_path / "redis").start()
    stack = RunningStack(tmp_path, DATABASE_URL=url, REDIS_URL=redis_server.url)
    try:
        stack.wait_serving()
        assert f"redis:  {redis_server.url} (already running)" in stack.output()
        assert not (stack.dir / "var" / "app.db").exists(), "SQLite was used instead of DATABASE_URL"
        Browserless(stack.url).register().login()  # the tables exist: make run migrated PostgreSQL
        assert (stack.dir / "var" / "mail").is_dir()
        stack.stop(signal.SIGINT, group=True)
        assert_nothing_left(stack)
    finally:
        stack.cleanup()
        redis_server.stop()
        drop()
