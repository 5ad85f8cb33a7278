"""The sweeper as an operator sees it: one process of the deployment sweeps at a time (the others
take over when it dies), a bad job in Redis does not stop it, and the worker parent never hands
a database transaction to the work horse it forks next."""
from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.models import utcnow
from config import normalize_database_url
from tests.faults.conftest import horse_pids
from tests.harness import Stack, new_user, wait_until

SWEEP_RECORD = "microblog:sweep:last"
SWEEP_LOCK = "microblog:sweep:lock"
INHERITED = "inherited an open database transaction"


def sweeps(stack: Stack, count: int, timeout: float = 60) -> list[str]:
    """Who ran each of the next `count` sweeps (the `by` of each new sweep record)."""
    client = stack.redis.client()
    seen: list[tuple[bytes, bytes]] = []

    def next_sweep() -> bool:
        record = client.hgetall(SWEEP_RECORD)
        if record and (not seen or record[b"at"] != seen[-1][0]):
            seen.append((record[b"at"], record[b"by"]))
        return len(seen) > count  # the first one seen may be older than the call

    wait_until(next_sweep, timeout, f"{count} sweeps", interval=0.1)
    return [by.decode() for _, by in seen[1:]]


def pid_of(token: str) -> int:
    """The process id in a sweeper token (host:pid:random)."""
    return int(token.split(":")[1])


def test_one_sweeper_at_a_time_and_takeover(make_stack):
    """Two workers both could sweep; one does, every time; when it is killed the other takes over."""
    stack = make_stack(web=False, workers=2)
    holders = sweeps(stack, 4)
    assert len(set(holders)) == 1, holders
    holder = pid_of(holders[0])
    assert holder in {w.pid for w in stack.workers}
    assert stack.redis.client().get(SWEEP_LOCK).decode() == holders[0], "the record and the lock agree"

    victim = next(w for w in stack.workers if w.pid == holder)
    killed_at = time.monotonic()
    victim.kill()  # SIGKILL: it cannot release the lock; the lock's expiry hands the turn on
    first = sweeps(stack, 1, timeout=30)
    print(f"\nsweeper killed: the other worker swept {time.monotonic() - killed_at:.1f} s later")
    after = first + sweeps(stack, 1, timeout=30)
    survivor = next(w for w in stack.workers if w.pid != holder)
    assert {pid_of(t) for t in after} == {survivor.pid}, after


def _insert_task(stack: Stack, user_id: int, age_seconds: int) -> str:
    """A queued Task row created age_seconds ago, as the web would have made it."""
    task_id = uuid.uuid4().hex
    engine = sa.create_engine(normalize_database_url(stack.database_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO task (id, name, lane, description, user_id, status, progress, delivering, created_at) "
                "VALUES (:id, 'export_posts', 'posts', 'Exporting posts', :user, 'queued', 0, :false, :created)"),
                {"id": task_id, "user": user_id, "false": False, "created": _ago(age_seconds)})
    finally:
        engine.dispose()
    return task_id


def _ago(seconds: int) -> datetime:
    """Naive UTC, as the app stores time stamps."""
    return utcnow() - timedelta(seconds=seconds)


def _user_id(stack: Stack, username: str) -> int:
    engine = sa.create_engine(normalize_database_url(stack.database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text('SELECT id FROM "user" WHERE username = :u'), {"u": username}).scalar_one()
    finally:
        engine.dispose()


def test_a_bad_job_in_redis_does_not_stop_the_sweeper(make_stack):
    """A job Redis holds but RQ cannot read is logged with its traceback and its task fails (nothing
    could run it); the sweeper goes on, and enqueues again the job of a task Redis lost."""
    stack = make_stack(workers=0)
    user = new_user(stack)
    user_id = _user_id(stack, user.username)
    unreadable = _insert_task(stack, user_id, age_seconds=60)
    stack.redis.client().hset(f"rq:job:{unreadable}", mapping={"data": "x", "created_at": "not a date"})
    watcher = user.socket()
    try:
        bad = watcher.terminal(unreadable, timeout=30)
        assert bad["status"] == "failed" and "failed in the worker" in bad["message"], bad
        lost = _insert_task(stack, user_id, age_seconds=60)  # the sweeper is still at work afterwards
        wait_until(lambda: stack.redis.client().exists(f"rq:job:{lost}"), 30, "the lost task's job enqueued again")
        assert lost.encode() in stack.redis.client().lrange("rq:queue:microblog-tasks", 0, -1)
    finally:
        watcher.close()
    assert "Traceback" in stack.webs[0].tail(400), "the bad job's error is in the log"


def test_no_transaction_crosses_a_fork(make_stack):
    """The worker parent runs the work-horse-killed hook, then forks the next job: that horse starts
    with no inherited transaction (SQLite), and both tasks end as they should."""
    stack = make_stack(held=False, MAIL_TIMEOUT="120")  # the SMTP hold keeps the first export running
    user = new_user(stack, posts=20)
    watcher = user.socket()
    stack.smtp.hold()
    try:
        first = user.export()
        stack.smtp.wait_held(60)  # the first horse is mailing: its file is written
        (horse,) = horse_pids(stack.workers[0].pid)
        os.kill(horse, signal.SIGKILL)  # the parent's hook ends the task, in the parent
        end = watcher.terminal(first, timeout=30)
        assert end["status"] == "finished" and "may not have been sent" in end["message"], end
        stack.smtp.release()
        second = user.export()
        assert watcher.terminal(second, timeout=60)["status"] == "finished"
    finally:
        stack.smtp.release()
        watcher.close()
    log = stack.workers[0].tail(400)
    assert INHERITED not in log, log


def test_an_ending_nobody_published_still_reaches_open_pages(make_stack):
    """A process that committed a task's ending and died before publishing it (a web process killed
    mid-cancel, a horse killed as it finished) leaves the row ended and no event: the page left open
    still shows the ending, from the sweeper's second announcement, within a sweep or two."""
    stack = make_stack(workers=0)  # the web process is the sweeper
    user = new_user(stack)
    user_id = _user_id(stack, user.username)
    watcher = user.socket()  # opened before the task exists: its snapshot cannot have shown it
    try:
        task_id = _insert_task(stack, user_id, age_seconds=3)
        engine = sa.create_engine(normalize_database_url(stack.database_url))
        try:
            with engine.begin() as conn:  # what end_task commits; its publish never happened
                conn.execute(sa.text(
                    "UPDATE task SET status = 'canceled', message = 'Canceled.', finished_at = :now, seq = seq + 1 "
                    "WHERE id = :id"), {"id": task_id, "now": utcnow()})
        finally:
            engine.dispose()
        ended_at = time.monotonic()
        end = watcher.terminal(task_id, timeout=20)
        print(f"\nan unpublished ending reached the open page {time.monotonic() - ended_at:.1f} s later")
        assert end["status"] == "canceled" and end["seq"] >= 1, end
        assert [e["status"] for e in watcher.of(task_id)] == ["canceled"], "announced once to this page"
    finally:
        watcher.close()
