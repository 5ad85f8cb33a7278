"""The sweeper announces each ending a second time (app/jobs/reannounce.py), on a real database and a
real (private) Redis: once per ending across passes, never one still being published, never an
active task, in the task's own language. The real processes are in tests/faults/test_sweeper.py."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.jobs import reannounce
from app.models import TaskStatus
from tests.factories import make_task


@pytest.fixture
def published(app) -> list[dict]:
    """The events the process publishes, recorded; no watermark left by an earlier test."""
    events: list[dict] = []
    app.extensions["progress_emitter"] = type("Recorder", (), {
        "emit": staticmethod(lambda event, payload, to=None, **kw: events.append({**payload, "_to": to}))})()
    app.extensions["redis"].delete(reannounce.WATERMARK)  # the Redis is shared by every test of the session
    return events


def test_each_ending_is_announced_again_once(app, make_user, published):
    """Endings older than SETTLE are published again with their row's seq; the next pass repeats none."""
    user = make_user()
    done = make_task(app, user.id, TaskStatus.FINISHED, progress=100, ended_ago=timedelta(seconds=5))
    canceled = make_task(app, user.id, TaskStatus.CANCELED, ended_ago=timedelta(seconds=30))
    just_now = make_task(app, user.id, TaskStatus.FAILED, ended_ago=timedelta(0))  # its ender is still publishing
    running = make_task(app, user.id, TaskStatus.STARTED)
    redis = app.extensions["redis"]
    with app.app_context():
        assert reannounce.reannounce_endings(redis) == 2
        assert [(e["task_id"], e["status"], e["_to"]) for e in published] == [
            (canceled, "canceled", f"user:{user.id}"), (done, "finished", f"user:{user.id}")]
        assert all(isinstance(e["seq"], int) for e in published)
        assert reannounce.reannounce_endings(redis) == 0, "the watermark kept the next pass from repeating them"
    ids = {e["task_id"] for e in published}
    assert just_now not in ids and running not in ids


def test_without_a_watermark_it_looks_back_a_while(app, make_user, published):
    """Redis lost the watermark (a restart): endings of the last LOOKBACK are announced, older ones not."""
    user = make_user()
    recent = make_task(app, user.id, TaskStatus.FINISHED, ended_ago=timedelta(seconds=60))
    old = make_task(app, user.id, TaskStatus.FINISHED, ended_ago=reannounce.LOOKBACK + timedelta(minutes=1))
    with app.app_context():
        reannounce.reannounce_endings(app.extensions["redis"])
    ids = [e["task_id"] for e in published]
    assert recent in ids and old not in ids


def test_a_pass_is_bounded_and_the_next_one_goes_on(app, make_user, published):
    """More endings than one pass takes: the rest come next pass, none twice, none skipped."""
    user = make_user()
    tasks = [make_task(app, user.id, TaskStatus.FINISHED, ended_ago=timedelta(seconds=10 + i)) for i in range(5)]
    redis = app.extensions["redis"]
    with app.app_context():
        assert reannounce.reannounce_endings(redis, limit=3) == 3
        assert reannounce.reannounce_endings(redis, limit=3) == 2
    assert sorted(e["task_id"] for e in published) == sorted(tasks)


def test_the_words_are_in_the_tasks_language(app, make_user, published):
    """A Spanish user's ending is announced again in Spanish, whoever sweeps."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import Task

    user = make_user()
    task_id = make_task(app, user.id, TaskStatus.CANCELED, ended_ago=timedelta(seconds=5))
    with app.app_context():
        db.session.execute(sa.update(Task).where(Task.id == task_id).values(language="es"))
        db.session.commit()
        reannounce.reannounce_endings(app.extensions["redis"])
    (event,) = published
    assert event["noun"] == "publicaciones", event["noun"]
