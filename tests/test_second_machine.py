"""Workers on a "second machine": two of four workers run from another clone of the repository,
sharing only what machines share (EXPORT_DIR, SECRET_KEY, Redis, the database). PostgreSQL."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from rq import Worker

from config import normalize_database_url
from scripts.services import ManagedProcess
from tests.harness import (ROOT, Browserless, RedisServer, SmtpServer, Stack, migrate, new_database_url, seed,
                           wait_until)

EXPORTS = 40
POSTS = 500


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Stack]:
    """PostgreSQL, Redis, SMTP and one web server; workers are the test's to start."""
    url, drop = new_database_url("postgresql", tmp_path)
    migrate(url)
    stack = Stack(tmp_path, url, RedisServer(tmp_path / "redis").start(), SmtpServer().start())
    try:
        stack.start_web()
        yield stack
    finally:
        stack.stop()
        stack.smtp.stop()
        stack.redis.stop()
        drop()


def start_worker_in(stack: Stack, checkout: Path) -> ManagedProcess:
    """`python -m worker` run from another checkout (same interpreter and packages, other code tree)."""
    worker = ManagedProcess([sys.executable, "-m", "worker"], stack.workdir / f"clone-worker-{len(stack.workers)}.log",
                            env=stack.env(), cwd=str(checkout)).start()
    wait_until(lambda: any(w.pid == worker.pid for w in Worker.all(connection=stack.redis.client())), 30,
               "the clone's worker to register")
    stack.workers.append(worker)
    return worker


def run_exports(stack: Stack) -> tuple[list[Browserless], list[str], float]:
    """EXPORTS users launch one export each at the same moment; seconds until the last one finished."""
    users = [Browserless(stack.url).register().login() for _ in range(EXPORTS)]
    for user in users:
        seed(stack.database_url, user.username, POSTS)
    engine = sa.create_engine(normalize_database_url(stack.database_url))
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        task_ids = list(pool.map(lambda u: u.export(), users))
    try:
        def finished() -> bool:
            with engine.connect() as conn:
                ended = conn.execute(sa.text("SELECT count(*) FROM task WHERE status IN "
                                             "('finished', 'failed', 'canceled')")).scalar_one()
            return ended == EXPORTS

        wait_until(finished, 300, f"{EXPORTS} exports to end", interval=0.1)
        elapsed = time.monotonic() - started
        with engine.connect() as conn:
            statuses = conn.execute(sa.text("SELECT status, count(*) FROM task GROUP BY status")).all()
    finally:
        engine.dispose()
    assert dict(statuses) == {"finished": EXPORTS}, statuses
    return users, task_ids, elapsed


def runs_per_log(stack: Stack, task_ids: list[str]) -> dict[str, dict[str, int]]:
    """For each worker log, how many times it started each job (RQ logs `queue: description (job id)`)."""
    counts = {}
    for worker in stack.workers:
        text = worker.log_path.read_text(errors="replace")
        counts[worker.log_path.name] = {t: len(re.findall(rf"microblog-tasks: (?!Job OK).*\({t}\)", text)) for t in task_ids}
    return counts


def test_forty_exports_on_four_workers_two_of_them_from_a_second_clone(deployment: Stack, tmp_path: Path) -> None:
    """All 40 finish, each job runs exactly once, each user gets one email, and both machines worked."""
    stack = deployment
    clone = tmp_path / "second-machine"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True)
    for _ in range(2):
        stack.start_worker()
        start_worker_in(stack, clone)
    users, task_ids, elapsed = run_exports(stack)
    print(f"\n{EXPORTS} exports of {POSTS} posts, 4 workers (2 from a second clone): {elapsed:.1f} s")
    counts = runs_per_log(stack, task_ids)
    for task_id in task_ids:
        assert sum(c[task_id] for c in counts.values()) == 1, (task_id, counts)
    assert all(sum(c.values()) > 0 for name, c in counts.items() if name.startswith("clone-")), \
        "the second clone's workers took jobs too"
    for user, task_id in zip(users, task_ids):
        mails = stack.smtp.to(user.email)
        assert len(mails) == 1, (user.email, len(mails))
        assert mails[0].attachment("posts.json") is not None
        files = list(stack.export_dir.rglob(f"{task_id}*"))
        assert len(files) == 1, files


def test_forty_exports_on_one_worker(deployment: Stack) -> None:
    """Baseline for the figure above: the same 40 exports on a single worker all finish too (`-s` prints the time)."""
    deployment.start_worker()
    _, _, elapsed = run_exports(deployment)
    print(f"\n{EXPORTS} exports of {POSTS} posts, 1 worker: {elapsed:.1f} s")
