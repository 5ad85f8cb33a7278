"""The socket server's relay (app/socket_queue.py): events of one task reach pages in `seq` order."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from app import socket_queue
from app.socket_queue import ResyncRedisManager


class RecordingManager(ResyncRedisManager):
    """The real relay filter, with the parent's delivery to sockets recorded instead."""

    def __init__(self) -> None:  # no Redis: _handle_emit is fed by hand
        self.on_resubscribe = None
        self._newest = OrderedDict()
        self._snapshots = OrderedDict()
        self.relayed: list[dict[str, Any]] = []
        self.rooms = {"/": {"user:1": {"sid-1": "eio-1"}}}  # user 1 has a socket on this server

    def relay(self, room: str = "user:1", **data: Any) -> None:
        """Feed one `task_progress` message as it comes off the Redis channel."""
        # As python-socketio 5.x publishes it: the event's arguments as a list.
        self._handle_emit({"method": "emit", "event": "task_progress", "data": [data], "room": room,
                           "namespace": "/"})


@pytest.fixture
def manager(monkeypatch) -> RecordingManager:
    """A manager whose parent relay records instead of sending."""
    m = RecordingManager()
    monkeypatch.setattr(socket_queue.socketio.RedisManager, "_handle_emit",
                        lambda self, message: self.relayed.append(message["data"][0]))
    return m


def event(task_id: str, seq: int | None, status: str = "started", progress: int = 0) -> dict[str, Any]:
    """A `task_progress` payload (only the fields the relay looks at)."""
    data = {"task_id": task_id, "status": status, "progress": progress}
    if seq is not None:
        data["seq"] = seq
    return data


def test_older_event_after_a_newer_one_is_dropped(manager):
    """Two publishers' events cross on the channel: the older one is not relayed, progress never goes back."""
    manager.relay(**event("a", 3, progress=40))
    manager.relay(**event("a", 2, progress=20))   # the worker's step, published before the web's newer one
    manager.relay(**event("a", 5, "canceled", 40))
    manager.relay(**event("a", 4, progress=60))   # a late step after the end
    manager.relay(**event("a", 5, "canceled", 40))  # a repeat
    assert [(e["seq"], e["status"]) for e in manager.relayed] == [(3, "started"), (5, "canceled")]


def test_tasks_are_ordered_independently(manager):
    """One task's high seq does not hold back another task's events."""
    manager.relay(**event("a", 9))
    manager.relay(**event("b", 1))
    manager.relay(**event("b", 2))
    assert [(e["task_id"], e["seq"]) for e in manager.relayed] == [("a", 9), ("b", 1), ("b", 2)]


def test_an_event_for_a_user_with_no_socket_here_goes_no_further(manager):
    """Every server gets every event: one for a user with no socket on this server is counted in and
    dropped before python-socketio builds its packet, and leaves no note of its task behind."""
    from app.ops.process_metrics import PROGRESS_IN, PROGRESS_OUT

    came_in, went_out = PROGRESS_IN._value.get(), PROGRESS_OUT._value.get()
    manager.relay(room="user:2", **event("b", 1))
    assert manager.relayed == [] and "b" not in manager._newest
    assert (PROGRESS_IN._value.get(), PROGRESS_OUT._value.get()) == (came_in + 1, went_out)
    manager.relay(**event("a", 1))  # user 1's socket is here
    assert [e["task_id"] for e in manager.relayed] == ["a"]
    assert (PROGRESS_IN._value.get(), PROGRESS_OUT._value.get()) == (came_in + 2, went_out + 1)


def test_snapshot_row_older_than_a_relayed_event_is_outdated(manager):
    """A snapshot read before a newer live event was relayed is recognised as outdated; equal or newer is not."""
    manager.relay(**event("a", 4, progress=50))
    assert manager.is_outdated(event("a", 3, progress=30))
    assert not manager.is_outdated(event("a", 4, progress=50))
    assert not manager.is_outdated(event("a", 6, "finished", 100))
    assert not manager.is_outdated(event("unknown", 1))


def test_events_without_seq_still_never_follow_an_end(manager):
    """A publisher that sends no seq is relayed as before, except anything after its task ended."""
    manager.relay(**event("a", None))
    manager.relay(**event("a", None, "finished", 100))
    manager.relay(**event("a", None, "started", 10))
    assert [e["status"] for e in manager.relayed] == ["started", "finished"]


def test_memory_is_bounded(manager, monkeypatch):
    """Only the most recently active tasks are remembered."""
    monkeypatch.setattr(socket_queue, "REMEMBERED_TASKS", 3)
    for n in range(10):
        manager.relay(**event(f"t{n}", 1))
    assert list(manager._newest) == ["t7", "t8", "t9"]


def test_live_events_older_than_a_sockets_snapshot_skip_that_socket(manager, monkeypatch):
    """A snapshot row newer than events still in flight: those events skip the sockets it was sent to."""
    skipped: list[list[str]] = []
    monkeypatch.setattr(socket_queue.socketio.RedisManager, "_handle_emit",
                        lambda self, message: skipped.append(message.get("skip_sid") or []))
    manager.note_snapshot(["sid-new"], event("a", 3, "finished", 100))
    manager.relay(**event("a", 1))  # published before the snapshot was read, relayed after it
    manager.relay(**event("a", 2))
    manager.relay(**event("a", 3, "finished", 100))  # a repeat for that socket
    manager.relay(**event("a", 4, "finished", 100))  # newer: everyone
    assert skipped == [["sid-new"], ["sid-new"], ["sid-new"], []]
    assert "a" not in manager._snapshots  # caught up: nothing left to remember


def test_snapshot_memory_expires(manager, monkeypatch):
    """Snapshots are remembered for SNAPSHOT_MEMORY seconds only (bounded memory)."""
    clock = iter([0.0, 100.0])
    monkeypatch.setattr(socket_queue.time, "monotonic", lambda: next(clock))
    manager.note_snapshot(["s1"], event("a", 1))
    manager.note_snapshot(["s2"], event("b", 1))
    assert list(manager._snapshots) == ["b"]


def test_the_first_subscription_resyncs_too(redis_server):
    """The listener subscribes only once the first page has connected (python-socketio starts it
    then): pages that connected before it subscribed are brought current as after any reconnection."""
    import threading

    from tests.harness import wait_until

    manager = ResyncRedisManager(redis_server.url, channel="resync-test")
    calls = []
    manager.on_resubscribe = lambda: calls.append(1)
    listen = manager._redis_listen_with_retries()
    received = []
    listener = threading.Thread(target=lambda: received.append(next(listen)), daemon=True)
    listener.start()  # connects, subscribes, then waits for the channel's first message
    try:
        wait_until(lambda: calls, 10, "the re-sync after the first subscription")
        wait_until(lambda: redis_server.client().publish("resync-test", b"x") or received, 10, "the listener")
        assert calls == [1]
    finally:
        listener.join(10)
        listen.close()
        manager.pubsub.close()
