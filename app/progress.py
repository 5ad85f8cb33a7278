"""Where progress is published: the Task row first, then RQ's job.meta, then a `task_progress` event.

The row is the truth. Every change of state is one conditional UPDATE, so a task ends exactly once
whoever gets there first (the job, a cancel, a failure hook or the sweep), and progress never goes
backwards. Events are fire-and-forget through Redis; pages recover from lost ones with the snapshot
the socket server sends on connect.

Ordering: every such UPDATE also bumps the row's `seq`, and every event carries the `seq` of the
row state it describes. Events from several processes (worker, web, sweep) and the snapshot can
reach a page in any order; whoever receives one older than the newest it has seen for that task
drops it. A counter, not `updated_at`: clocks of different machines disagree and two updates can
share a microsecond, while the database serialises increments of one row exactly.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol, TypeVar

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l
from rq import get_current_job

from app.eta import RateEstimator
from app.expiry import expires_at, is_expired
from app.extensions import db
from app.logs import log_step, milestones_crossed
from app.models import Task, TaskStatus, isoformat_z, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENT = "task_progress"
TERMINAL = (TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELED)
# The message of every canceled task, whoever ended it: lazy, so it is written in the task's language.
CANCELED = _l("Canceled.")
# Seconds between heartbeats a running job writes into its row (the sweep's limit is far longer).
HEARTBEAT_INTERVAL = 1.5


class Emitter(Protocol):
    """Anything with Flask-SocketIO's `emit` signature."""

    def emit(self, event: str, *args: Any, **kwargs: Any) -> Any: ...


class TaskCanceled(Exception):
    """The task's row was ended by someone else (a cancel) while the job ran."""


def user_room(user_id: int) -> str:
    """The Socket.IO room every connection of a user joins."""
    return f"user:{user_id}"


def download_url(task: Task) -> str | None:
    """Relative download link of a finished export, else None."""
    return f"/tasks/{task.id}/download" if task.has_download and not is_expired(task) else None


def task_payload(task: Task) -> dict[str, Any]:
    """The `task_progress` event (and `/api/tasks/<id>`) body for a task."""
    from app.jobs import kind_fields  # the registry imports this module

    return {
        **kind_fields(task.name),  # what the browser needs about the kind (lane, retry), never its name
        "task_id": task.id,
        "name": task.name,
        "description": task.description,
        "progress": task.progress,
        "status": task.status.value,
        "message": task.message,
        "download_url": download_url(task),
        "created_at": isoformat_z(task.created_at),
        "started_at": isoformat_z(task.started_at),
        "finished_at": isoformat_z(task.finished_at),
        "seq": task.seq,
        "expires_at": isoformat_z(expires_at(task)),  # issue 9: retention
        # Counts, rate and time left (issue 12). Rate and ETA live in the running job only: null elsewhere.
        "current": task.current, "total": task.total, "eta_seconds": None, "rate": None,
        "result_bytes": task.result_bytes, "delivery": task.delivery,
        **task_words(task.name),
    }


def task_words(name: str) -> dict[str, Any]:
    """What pages call a kind of task, from the job registry (never special-cased by name in the UI)."""
    from app.jobs import JOBS  # here, not at the top: app.jobs imports this module

    spec = JOBS.get(name)
    if spec is None:
        return {"done_description": None, "noun": str(_l("items")), "ready_title": None}
    # The retry link comes with the kind's other fields (app.jobs.kind_fields): its launch path.
    return {"done_description": str(spec.done_description), "noun": str(spec.noun),
            "ready_title": str(spec.ready_title)}


def emitter() -> Emitter:
    """The process's Socket.IO emitter: the server itself, or the worker's write-only one."""
    return current_app.extensions["progress_emitter"]


def publish(task: Task, **changes: Any) -> None:
    """Send the task's current state (with `changes` applied) to every connection of its owner."""
    emit_payload({**task_payload(task), **changes}, task.user_id)


def emit_payload(payload: dict[str, Any], user_id: int) -> None:
    """Send one `task_progress` event to a user's room; never raises."""
    try:
        emitter().emit(EVENT, payload, to=user_room(user_id))
    except Exception:  # an event lost here is repaired by the snapshot on (re)connect
        log.exception("could not publish progress of task %s", payload["task_id"])


def with_db_retry(fn: Callable[[], T], attempts: int = 4, delay: float = 0.5) -> T:
    """Run a short transaction, again after a pause if the database was locked or the connection dropped."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except sa.exc.OperationalError as exc:  # SQLite "database is locked", a dropped PostgreSQL link
            db.session.rollback()  # an invalidated connection is replaced on the next use
            if attempt == attempts:
                raise
            log.warning("database unavailable (%s); attempt %d of %d", exc.orig, attempt, attempts)
            time.sleep(delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _update(task_id: str, only_if: sa.ColumnElement[bool], *, attempts: int = 4, **values: Any) -> int | None:
    """One conditional UPDATE of a task row, committed; the row's new `seq` if it changed, else None."""
    def run() -> int | None:
        stmt = (sa.update(Task).where(Task.id == task_id, only_if).values(seq=Task.seq + 1, **values)
                .execution_options(synchronize_session=False))
        if db.session.get_bind().dialect.update_returning:  # PostgreSQL, SQLite: one round trip
            seq = db.session.execute(stmt.returning(Task.seq)).scalar_one_or_none()
        else:  # MySQL: our UPDATE holds the row lock, so this read sees our own increment
            changed = db.session.execute(stmt).rowcount == 1
            seq = read_seq(task_id) if changed else None
        db.session.commit()
        return seq

    return with_db_retry(run, attempts)


def read_seq(task_id: str) -> int | None:
    """A task row's `seq` (None if there is no such row), in the transaction in progress."""
    return db.session.scalar(sa.select(Task.seq).where(Task.id == task_id))


def _reload(task_id: str) -> Task:
    """Fresh copy of a task row after a bulk UPDATE, detached: it keeps what was read.

    Left in the session, the commit would expire it, and every later look at it (its payload, its
    status, its owner) would read the row again: four more SELECTs in every export."""
    def run() -> Task:
        db.session.expire_all()
        task = db.session.get(Task, task_id)
        assert task is not None, task_id
        db.session.expunge(task)
        db.session.commit()  # end the read transaction at once
        return task

    return with_db_retry(run)


def write_heartbeat(task_id: str) -> bool:
    """Record that a started task's job is alive; False once the task is not running. Never waits long."""
    try:
        return _update(task_id, Task.status == TaskStatus.STARTED, attempts=1, heartbeat_at=utcnow()) is not None
    except sa.exc.OperationalError:
        log.warning("task %s: heartbeat not recorded, the database is busy", task_id)
        return True


def end_task(task_id: str, status: TaskStatus, message: str | None = None, *,
             result_path: str | None = None, allow_delivering: bool = True, **extra: Any) -> Task | None:
    """End an active task once; publish and return it, or None if it had already ended.

    `extra` sets more columns in the same UPDATE (counts, size, delivery)."""
    assert status in TERMINAL
    condition = Task.status.in_(TaskStatus.active())
    if not allow_delivering:
        condition = condition & sa.not_(Task.delivering)
    message = None if message is None else str(message)  # a lazy constant, in the task's language now
    values: dict[str, Any] = {"status": status, "message": message, "finished_at": utcnow()}
    if status == TaskStatus.FINISHED:
        values.update(progress=100, result_path=result_path)
    values.update(extra)
    if not _update(task_id, condition, **values):
        return None
    task = _reload(task_id)
    publish(task)
    log_step(status.value, task.id, task.user_id, task.created_at, message=message)
    return task


class ProgressPublisher:
    """Reports one running task's progress, throttled at the source."""

    def __init__(self, task_id: str, min_interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.task_id = task_id
        self.min_interval = min_interval
        self.clock = clock
        self.percent = 0
        self._last_sent = float("-inf")
        self._started: dict[str, Any] = {}  # the `started` event: later ones change only a field or two
        self._user_id = 0
        self.last_beat = float("-inf")  # clock() of the last heartbeat written into the row
        self._created: Any = None
        self.current: int | None = None
        self.total: int | None = None
        self.estimator = RateEstimator(clock=clock)

    def start(self) -> Task | None:
        """Mark the task started and announce it; None if it was canceled before it began."""
        now = utcnow()
        rerun = False
        if not _update(self.task_id, Task.status == TaskStatus.QUEUED, status=TaskStatus.STARTED, started_at=now,
                       heartbeat_at=now):
            if not self._reopen():
                return None
            rerun = True
        self.last_beat = self.clock()
        task = _reload(self.task_id)
        if task.status != TaskStatus.STARTED:
            return None  # canceled between our update and this read: its event is already out
        self.percent = task.progress
        self.estimator = RateEstimator(clock=self.clock)  # the ETA's clock starts when the work does
        self._started, self._user_id, self._created = task_payload(task), task.user_id, task.created_at
        log_step("started", task.id, task.user_id, task.created_at, rerun=rerun or None)
        emit_payload(self._started, self._user_id)
        self._last_sent = self.clock()
        self._mirror_meta()
        return task

    def advance_count(self, current: int, total: int, share: int = 100) -> None:
        """Record `current` of `total` items done; they fill the first `share` percent of the bar."""
        percent = current * share // max(total, current) if total else 0
        self.advance(percent, current, total)

    def advance(self, percent: int, current: int | None = None, total: int | None = None) -> None:
        """Record progress if the integer percent grew and the last event is old enough."""
        percent = max(0, min(99, int(percent)))  # 100 belongs to the finished event alone
        if current is not None:
            self.estimator.add(current)  # every step feeds the rate, sent or not
            self.current, self.total = current, total
        if percent <= self.percent or self.clock() - self._last_sent < self.min_interval:
            if not self.beat():  # nothing new to show, but the sweep must still see the job alive
                raise TaskCanceled(self.task_id)
            return
        counts = {} if current is None else {"current": current, "total": total}
        try:
            changed = _update(self.task_id, (Task.status == TaskStatus.STARTED) & (Task.progress < percent),
                              attempts=1, progress=percent, heartbeat_at=utcnow(), **counts)
        except sa.exc.OperationalError:
            # A progress step is not worth stalling the export for: the next one will try again.
            log.warning("task %s: progress %d%% not recorded, the database is busy", self.task_id, percent)
            self._last_sent = self.clock()
            return
        if not changed:
            raise TaskCanceled(self.task_id)
        for mark in milestones_crossed(self.percent, percent):
            log_step(f"progress_{mark}", self.task_id, self._user_id, self._created, progress=percent)
        self.percent = percent
        self._last_sent = self.last_beat = self.clock()
        # From what we wrote, not a re-read: a cancel committed since would make us announce it twice.
        emit_payload({**self._started, "progress": percent, "seq": changed, **self._counts()}, self._user_id)
        self._mirror_meta()

    def _counts(self) -> dict[str, Any]:
        """The count, rate and time-left fields of the next event."""
        rate = self.estimator.rate()
        return {"current": self.current, "total": self.total,
                "eta_seconds": self.estimator.eta_seconds(self.total),
                "rate": None if rate is None else round(rate)}

    def beat(self) -> bool:
        """Write the heartbeat if the last one is HEARTBEAT_INTERVAL old; False once the task is not running.

        The work horse's heartbeat thread (app/jobs/heartbeat.py) beats too, for silent phases.
        """
        if self.clock() - self.last_beat < HEARTBEAT_INTERVAL:
            return True
        self.last_beat = self.clock()  # a failed beat is not retried at once: the next one will do
        return write_heartbeat(self.task_id)

    def begin_delivery(self, message: str) -> None:
        """Claim the task for delivery (from here on a cancel is refused, 409) and say what happens."""
        message = str(message)
        seq = _update(self.task_id, Task.status == TaskStatus.STARTED, delivering=True, message=message)
        if not seq:
            raise TaskCanceled(self.task_id)
        for mark in milestones_crossed(self.percent, 99):  # passed, though a throttled step went unrecorded
            log_step(f"progress_{mark}", self.task_id, self._user_id, self._created, progress=self.percent)
        log_step("delivering", self.task_id, self._user_id, self._created)
        # The email can take a second or two: show why the bar waits.
        emit_payload({**self._started, "progress": self.percent, "message": message, "seq": seq,
                      "current": self.current, "total": self.total}, self._user_id)

    def _reopen(self) -> bool:
        """Run a failed task again because RQ runs its job again (an operator requeued it).

        Only `failed` reopens: a finished or canceled task stays ended. Progress is kept, so it
        never goes backwards; the unique index refuses it while the user has another one active.
        """
        if get_current_job() is None:
            return False
        try:
            now = utcnow()
            return _update(self.task_id, Task.status == TaskStatus.FAILED, status=TaskStatus.STARTED,
                           message=None, finished_at=None, delivering=False, started_at=now,
                           heartbeat_at=now) is not None
        except sa.exc.IntegrityError:
            db.session.rollback()
            log.warning("task %s not rerun: its user has another one of its kind active", self.task_id)
            return False

    def _mirror_meta(self) -> None:
        """Copy progress into RQ's job.meta for operators (rq-dashboard, `rq info`)."""
        job = get_current_job()
        if job is not None:
            try:
                job.meta["progress"] = self.percent
                job.save_meta()
            except Exception:  # Redis down: the row is the truth; the mirror can lag
                log.warning("could not mirror progress of %s into job.meta", self.task_id)
