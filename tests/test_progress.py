"""Where progress is published (app/progress.py): the row, the throttle, and exactly one ending.

Unit tests on a real database, with a fake clock and a fake emitter standing in for Socket.IO.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.models import TaskStatus
from app.progress import EVENT, ProgressPublisher, TaskCanceled, end_task, user_room
from tests.factories import EVENT_EXTRAS, EVENT_FIELDS, get_task, make_task

TERMINAL = {"finished", "failed", "canceled"}


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time, in seconds."""
        return self.now

    def tick(self, seconds: float) -> None:
        """Let time pass."""
        self.now += seconds


class FakeEmitter:
    """Records what would have been sent over Socket.IO."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    def emit(self, event: str, data: dict[str, Any], to: str | None = None, **_: Any) -> None:
        """Record one event."""
        self.sent.append((event, data, to))

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """The event bodies, in order."""
        return [data for _, data, _ in self.sent]


class BrokenEmitter:
    """An emitter whose Redis is down."""

    def emit(self, *args: Any, **kwargs: Any) -> None:
        """Fail like a lost Redis connection."""
        raise ConnectionError("Redis is down")


@pytest.fixture
def emitter(app) -> Iterator[FakeEmitter]:
    """A fake emitter installed as the app's progress emitter, inside an app context."""
    fake = FakeEmitter()
    app.extensions["progress_emitter"] = fake
    with app.app_context():
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock."""
    return FakeClock()


@pytest.fixture
def user(make_user):
    """The owner of the tasks."""
    return make_user("alice")


@pytest.fixture
def task_id(app, user) -> str:
    """A queued export of alice."""
    return make_task(app, user.id)


@pytest.fixture
def publisher(task_id: str, clock: FakeClock, emitter: FakeEmitter) -> ProgressPublisher:
    """A started publisher for the task; the 'started' event is cleared so tests see what follows."""
    publisher = ProgressPublisher(task_id, min_interval=0.1, clock=clock)
    assert publisher.start() is not None
    emitter.sent.clear()
    return publisher


def test_start_emits_one_started_event(app, user, task_id, clock, emitter):
    """start() marks the task started and announces it once, to its owner's room, with the contract's fields."""
    task = ProgressPublisher(task_id, clock=clock).start()
    assert task is not None and task.status == TaskStatus.STARTED
    assert len(emitter.sent) == 1
    event, payload, room = emitter.sent[0]
    assert (event, room) == (EVENT, user_room(user.id)) == ("task_progress", f"user:{user.id}")
    assert set(payload) == EVENT_FIELDS | EVENT_EXTRAS
    assert payload["task_id"] == task_id and payload["name"] == "export_posts"
    assert (payload["status"], payload["progress"]) == ("started", 0)
    assert isinstance(payload["description"], str) and payload["description"]
    assert payload["message"] is None and payload["download_url"] is None
    assert payload["created_at"].endswith("Z") and payload["started_at"].endswith("Z")
    assert payload["finished_at"] is None
    row = get_task(app, task_id)
    assert row.status == TaskStatus.STARTED and row.started_at is not None


def test_start_after_cancel_does_nothing(app, user, clock, emitter):
    """A task canceled while queued is not started, and nothing is announced."""
    task_id = make_task(app, user.id, TaskStatus.CANCELED)
    assert ProgressPublisher(task_id, clock=clock).start() is None
    assert emitter.sent == []
    assert get_task(app, task_id).status == TaskStatus.CANCELED


def test_advance_waits_for_min_interval(app, task_id, publisher, clock, emitter):
    """A higher percent inside min_interval is neither sent nor stored; once it has passed, it is."""
    clock.tick(0.05)
    publisher.advance(10)
    assert emitter.sent == []
    assert get_task(app, task_id).progress == 0
    clock.tick(0.06)  # now past min_interval since the 'started' event
    publisher.advance(11)
    assert [(p["status"], p["progress"]) for p in emitter.payloads] == [("started", 11)]
    assert get_task(app, task_id).progress == 11


def test_advance_only_sends_a_higher_integer_percent(app, task_id, publisher, clock, emitter):
    """Time passing without the integer percent growing sends nothing: not 10.9 after 10, not 20 after 40."""
    for value in (10, 10, 10.2, 10.9, 40, 20, 39.5):
        clock.tick(1)
        publisher.advance(value)
    assert [p["progress"] for p in emitter.payloads] == [10, 40]
    assert get_task(app, task_id).progress == 40


def test_advance_caps_at_99(app, task_id, publisher, clock, emitter):
    """Only the finished event may say 100: advance caps at 99, however far a job overshoots."""
    for value in (150, 100, 99.9):
        clock.tick(1)
        publisher.advance(value)
    assert [p["progress"] for p in emitter.payloads] == [99]
    assert get_task(app, task_id).progress == 99


def test_at_most_about_ten_events_per_second(publisher, clock, emitter):
    """A job reporting every millisecond for two seconds sends at most ~10 events a second, increasing."""
    for step in range(1, 2001):
        clock.tick(0.001)
        publisher.advance(step * 99 // 2000)
    progress = [p["progress"] for p in emitter.payloads]
    assert 15 <= len(progress) <= 21
    assert progress == sorted(set(progress))


def test_end_task_finished_once(app, task_id, publisher, emitter):
    """A task ends once: the first end sends one finished event at 100; a second end changes nothing."""
    task = end_task(task_id, TaskStatus.FINISHED, result_path="/exports/x.json")
    assert task is not None and task.status == TaskStatus.FINISHED and task.progress == 100
    assert len(emitter.sent) == 1
    payload = emitter.payloads[0]
    assert (payload["status"], payload["progress"]) == ("finished", 100)
    assert payload["download_url"] == f"/tasks/{task_id}/download"
    assert payload["finished_at"].endswith("Z")

    assert end_task(task_id, TaskStatus.FINISHED) is None
    assert end_task(task_id, TaskStatus.CANCELED, "Canceled.") is None
    assert len(emitter.sent) == 1
    row = get_task(app, task_id)
    assert row.status == TaskStatus.FINISHED and row.result_path == "/exports/x.json"


def test_end_task_failed_keeps_progress(app, task_id, publisher, clock, emitter):
    """A failed task keeps the progress it reached (never 100) and carries its reason."""
    clock.tick(1)
    publisher.advance(30)
    task = end_task(task_id, TaskStatus.FAILED, "The mail server is down.")
    assert task is not None
    payload = emitter.payloads[-1]
    assert (payload["status"], payload["progress"], payload["message"]) == ("failed", 30, "The mail server is down.")
    assert payload["download_url"] is None
    assert get_task(app, task_id).progress == 30


def test_job_stops_after_cancel(app, task_id, publisher, clock, emitter):
    """Once a cancel ended the row, the job's next progress update or delivery raises TaskCanceled."""
    assert end_task(task_id, TaskStatus.CANCELED, "Canceled.", allow_delivering=False) is not None
    emitter.sent.clear()
    clock.tick(1)
    with pytest.raises(TaskCanceled):
        publisher.advance(50)
    with pytest.raises(TaskCanceled):
        publisher.begin_delivery("Sending the email…")
    assert emitter.sent == []
    row = get_task(app, task_id)
    assert (row.status, row.progress, row.delivering) == (TaskStatus.CANCELED, 0, False)


def test_cancel_refused_once_delivering(app, task_id, publisher, emitter):
    """After begin_delivery, a cancel is refused (the mail is on its way); the job can still finish."""
    publisher.begin_delivery("Sending the email…")
    assert [(p["status"], p["message"]) for p in emitter.payloads] == [("started", "Sending the email…")]
    emitter.sent.clear()
    assert end_task(task_id, TaskStatus.CANCELED, "Canceled.", allow_delivering=False) is None
    assert emitter.sent == []
    row = get_task(app, task_id)
    assert row.status == TaskStatus.STARTED and row.delivering
    assert end_task(task_id, TaskStatus.FINISHED) is not None
    assert [p["status"] for p in emitter.payloads] == ["finished"]


def test_whole_lifecycle_is_well_ordered(user, task_id, clock, emitter):
    """started, rising progress, then exactly one terminal event at 100: what a page following it sees."""
    publisher = ProgressPublisher(task_id, clock=clock)
    publisher.start()
    for percent in (5, 5, 3, 50, 95, 120):
        clock.tick(0.2)
        publisher.advance(percent)
    publisher.begin_delivery("Sending the email…")
    end_task(task_id, TaskStatus.FINISHED, result_path="/exports/x.json")
    statuses = [p["status"] for p in emitter.payloads]
    progress = [p["progress"] for p in emitter.payloads]
    assert statuses == ["started"] * 6 + ["finished"]
    assert progress == [0, 5, 50, 95, 99, 99, 100]
    assert emitter.payloads[-2]["message"] == "Sending the email…"
    assert emitter.payloads[-1]["message"] is None
    assert sum(s in TERMINAL for s in statuses) == 1
    assert {room for _, _, room in emitter.sent} == {f"user:{user.id}"}


def test_lost_events_do_not_break_the_job(app, task_id, clock):
    """With the emitter failing (Redis down), the row still moves: it is the truth pages recover from."""
    app.extensions["progress_emitter"] = BrokenEmitter()
    with app.app_context():
        publisher = ProgressPublisher(task_id, clock=clock)
        assert publisher.start() is not None
        clock.tick(1)
        publisher.advance(60)
        assert end_task(task_id, TaskStatus.FINISHED) is not None
    row = get_task(app, task_id)
    assert (row.status, row.progress) == (TaskStatus.FINISHED, 100)


def test_every_event_carries_the_rows_growing_seq(app, task_id, clock, emitter):
    """Each change of the row bumps its `seq` in the same UPDATE; each event carries the seq it describes."""
    publisher = ProgressPublisher(task_id, clock=clock)
    publisher.start()
    for percent in (10, 40, 80):
        clock.tick(0.2)
        publisher.advance(percent)
    publisher.begin_delivery("Sending the email…")
    end_task(task_id, TaskStatus.FINISHED, result_path="/exports/x.json")
    seqs = [p["seq"] for p in emitter.payloads]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1, seqs
    assert get_task(app, task_id).seq == seqs[-1]
    # An end that changes nothing bumps nothing.
    assert end_task(task_id, TaskStatus.CANCELED, "Canceled.") is None
    assert get_task(app, task_id).seq == seqs[-1]
