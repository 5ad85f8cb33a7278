"""The sweep and RQ's callbacks in-process, on a real database and a real (private) Redis: they leave
no session behind (the worker parent forks right after them), and the sweep loop survives anything.
The real processes are in tests/faults/test_sweeper.py and tests/faults/test_heartbeat.py."""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from app.extensions import db
from app.jobs import callbacks, sweep
from app.models import TaskStatus, utcnow
from tests.factories import get_task, make_task


@pytest.fixture
def quiet_emitter(app):
    """Events go nowhere (the unit-test app has no message queue); the sweeper turn is free."""
    app.extensions["progress_emitter"] = SimpleNamespace(emit=lambda *a, **k: None)
    app.extensions["redis"].delete(sweep.SWEEP_LOCK)  # the Redis is shared by every test of the session
    return app


@pytest.mark.parametrize("hook", ["stopped", "horse_killed", "failure"])
def test_callbacks_leave_no_session(quiet_emitter, make_user, hook):
    """After each RQ hook, the process holds no session (and so no transaction) to fork with."""
    app = quiet_emitter
    user = make_user()
    task_id = make_task(app, user.id, TaskStatus.STARTED)
    job = SimpleNamespace(id=task_id)
    with app.app_context():
        if hook == "stopped":
            callbacks.on_job_stopped(job, None)
        elif hook == "horse_killed":
            callbacks.on_work_horse_killed(task_id, 9)
        else:
            callbacks.on_job_failure(job, None, RuntimeError, RuntimeError("boom"), None)
        assert not db.session.registry.has()
    assert get_task(app, task_id).status in (TaskStatus.CANCELED, TaskStatus.FAILED)


def test_sweep_leaves_no_session_and_fails_a_silent_task(quiet_emitter, make_user):
    """A started task whose heartbeat is older than the limit fails; the sweep's session is gone after."""
    app = quiet_emitter
    user = make_user()
    silent = make_task(app, user.id, TaskStatus.STARTED, age=timedelta(minutes=5))
    with app.app_context():
        assert sweep.sweep_once() == 1
        assert not db.session.registry.has()
    task = get_task(app, silent)
    assert task.status == TaskStatus.FAILED and task.message == callbacks.WORKER_DIED


def test_fresh_heartbeat_is_never_swept(quiet_emitter, make_user):
    """Started long ago, delivering, its job unknown to Redis, but beating: left alone."""
    app = quiet_emitter
    user = make_user()
    task_id = make_task(app, user.id, TaskStatus.STARTED, age=timedelta(minutes=5), delivering=True)
    with app.app_context():
        db.session.execute(sa_update_heartbeat(task_id))
        db.session.commit()
        assert sweep.sweep_once() == 0
    assert get_task(app, task_id).status == TaskStatus.STARTED


def sa_update_heartbeat(task_id: str):
    """UPDATE the task's heartbeat to now."""
    import sqlalchemy as sa

    from app.models import Task

    return sa.update(Task).where(Task.id == task_id).values(heartbeat_at=utcnow())


def test_sweep_loop_survives_any_error(quiet_emitter, monkeypatch, caplog):
    """An unexpected exception in one sweep is logged with its traceback; the loop sweeps again."""
    app = quiet_emitter
    calls = []

    def sweep_abandoned_tasks() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise AssertionError("a bug in the sweep")
        return 0

    monkeypatch.setattr(sweep, "sweep_abandoned_tasks", sweep_abandoned_tasks)
    # Alembic's fileConfig (run by the app fixture's upgrade) disables loggers that existed before it.
    monkeypatch.setattr(logging.getLogger("app.jobs.sweep"), "disabled", False)
    waits = iter([False, False, False, True])
    with caplog.at_level(logging.ERROR, logger="app.jobs.sweep"):
        sweep.sweep_forever(app, lambda seconds: next(waits))
    assert len(calls) == 3
    assert any(r.exc_info and "a bug in the sweep" in str(r.exc_info[1]) for r in caplog.records)


def test_the_worker_never_forks_while_its_sweeper_is_in_the_database(quiet_emitter, monkeypatch):
    """The sweeper holds the fork guard while it sweeps; the worker forks a work horse only with the guard.

    A fork while another thread is inside SQLite copies its locks held: the horse hung on its first query."""
    import threading

    from rq.worker import Worker

    from worker.runner import FORK_GUARD, MicroblogWorker

    app = quiet_emitter
    held_while_sweeping = []
    monkeypatch.setattr(sweep, "sweep_abandoned_tasks", lambda: held_while_sweeping.append(FORK_GUARD.locked()) or 0)
    waits = iter([False, True])
    sweep.sweep_forever(app, lambda seconds: next(waits), FORK_GUARD)
    assert held_while_sweeping == [True] and not FORK_GUARD.locked()

    forked_at = []
    monkeypatch.setattr(Worker, "fork_work_horse", lambda self, job, queue: forked_at.append(time.monotonic()))
    worker = MicroblogWorker.__new__(MicroblogWorker)  # fork_work_horse needs nothing else of it
    FORK_GUARD.acquire()  # the sweeper is inside the database
    fork = threading.Thread(target=worker.fork_work_horse, args=(None, None))
    fork.start()
    time.sleep(0.2)
    assert forked_at == []  # the fork waits
    released_at = time.monotonic()
    FORK_GUARD.release()
    fork.join(5)
    assert len(forked_at) == 1 and forked_at[0] >= released_at


def test_a_queued_task_whose_job_redis_lost_is_enqueued_again(quiet_emitter, make_user):
    """Past the enqueue grace, a queued row with no job in Redis gets its job back (it stays queued,
    nothing fails); a row of a kind this deployment no longer runs fails with a reason instead."""
    from rq.job import Job

    from app.jobs import redis_client, task_queue

    app = quiet_emitter
    user, other = make_user("lost1"), make_user("lost2")
    lost = make_task(app, user.id, TaskStatus.QUEUED, age=timedelta(minutes=5))
    gone_kind = make_task(app, other.id, TaskStatus.QUEUED, name="retired_kind", age=timedelta(minutes=5))
    with app.app_context():
        task_queue().empty()
        assert sweep.sweep_once() == 1  # only the retired kind ended
        job = Job.fetch(lost, connection=redis_client())
        assert lost in task_queue().job_ids and job.func_name.endswith("export_posts")
        assert sweep.sweep_once() == 0, "enqueued once: the next sweep finds the job there"
        assert task_queue().job_ids.count(lost) == 1
    assert get_task(app, lost).status == TaskStatus.QUEUED
    retired = get_task(app, gone_kind)
    assert retired.status == TaskStatus.FAILED and retired.message == str(sweep.JOB_FAILED)
