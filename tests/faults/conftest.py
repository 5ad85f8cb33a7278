"""A private deployment per fault test, so killing its parts harms no other test."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.harness import Browserless, RedisServer, SmtpServer, Stack, Watcher, migrate, new_database_url, new_user

pytestmark = pytest.mark.faults

HELD_POSTS = 50  # a held export needs posts to write; how long it runs is up to the test, not their number


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory: a deployment with its own database, Redis and SMTP server; stopped after the test.

    Exports are held (tests/jobs.py: they advance only as the test releases them) unless
    `held=False` asks for the real, free-running export.
    """
    made: list[tuple[Stack, Callable[[], None]]] = []

    def make(db: str = "sqlite", workers: int = 1, web: bool = True, held: bool = True, **env: str) -> Stack:
        workdir = tmp_path / f"stack{len(made)}"
        workdir.mkdir()
        url, drop = new_database_url(db, workdir)
        migrate(url)
        if held:
            env.setdefault("TESTING_JOBS", "1")
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


def running_export(stack: Stack, posts: int = HELD_POSTS, at: int = 5) -> tuple[Browserless, Watcher, str]:
    """A user, their socket, and a held export of theirs that is under way at `at` percent.

    It stays there, "still running", until the test calls `stack.release(task_id)`.
    """
    user = new_user(stack, posts=posts)
    watcher = user.socket()
    task_id = user.export()
    stack.release(task_id, at)
    watcher.wait_for(lambda e: e["task_id"] == task_id and e["progress"] >= at, what=f"the export at {at} %")
    return user, watcher, task_id


def finish(stack: Stack, watcher: Watcher, task_id: str, timeout: float = 60) -> dict:
    """Release a held export to the end and return its terminal event."""
    stack.release(task_id)
    return watcher.terminal(task_id, timeout=timeout)
