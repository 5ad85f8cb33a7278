"""A private deployment per fault test, so killing its parts harms no other test."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.harness import Browserless, RedisServer, SmtpServer, Stack, Watcher, migrate, new_database_url, new_user

pytestmark = pytest.mark.faults


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory: a deployment with its own database, Redis and SMTP server; stopped after the test."""
    made: list[tuple[Stack, Callable[[], None]]] = []

    def make(db: str = "sqlite", workers: int = 1, web: bool = True, **env: str) -> Stack:
        workdir = tmp_path / f"stack{len(made)}"
        workdir.mkdir()
        url, drop = new_database_url(db, workdir)
        migrate(url)
        stack = Stack(workdir, url, RedisServer(workdir / "redis").start(), SmtpServer().start(),
                      extra_env={k: str(v) for k, v in env.items()})
        made.append((stack, drop))
        if web:
            stack.start_web()
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield make
    for stack, drop in made:
        stack.stop()
        stack.smtp.stop()
        stack.redis.stop()
        drop()


def horse_pids(worker_pid: int) -> list[int]:
    """PIDs of the work horses a worker has forked (its child processes)."""
    try:
        text = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def running_export(stack: Stack, posts: int = 600_000) -> tuple[Browserless, Watcher, str]:
    """A user, their socket, and an export of theirs that is under way (progress >= 2)."""
    user = new_user(stack, posts=posts)
    watcher = user.socket()
    task_id = user.export()
    watcher.wait_for(lambda e: e["task_id"] == task_id and e["progress"] >= 2, what="the export to run")
    return user, watcher, task_id
