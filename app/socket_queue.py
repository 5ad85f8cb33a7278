"""The socket server's Redis message queue, with a hook for when its subscription comes back.

Redis pub/sub is at-most-once: events published while a server was not subscribed are lost.
python-socketio's RedisManager resubscribes by itself but tells nobody, with a back-off that
grows to 60 s. This subclass caps the back-off and calls `on_resubscribe` after every
reconnection, so the server can re-send each connected user's snapshot (CONTRACT: within 10 s).

It also keeps each task's events in order on the wire: every `task_progress` carries its row's
`seq` (app/progress.py), and the relay drops an event not newer than one it already relayed for
that task, and skips the sockets whose snapshot already showed a newer state (bounded memory).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Iterator

import socketio

from app.ops.process_metrics import PROGRESS_IN, PROGRESS_OUT, PROGRESS_SUPPRESSED
from app.room_index import RoomIndexMixin

MAX_RETRY_SLEEP = 4.0
TERMINAL = frozenset({"finished", "failed", "canceled"})
# Tasks whose newest event this server remembers; the least recently active fall out (bounded memory).
REMEMBERED_TASKS = 50_000
ENDED = float("inf")  # an event without `seq` that ended its task: nothing after it is relayed
# How long a snapshot sent to a socket holds back older live events still in flight to it.
SNAPSHOT_MEMORY = 30.0


def event_seq(data: dict) -> float | None:
    """The `seq` a `task_progress` payload carries, or None (a publisher that predates it).

    A row's seq is an integer; an event that changes no row (the import's write phase) carries a
    fraction between the row's seq and the next one."""
    seq = data.get("seq")
    return seq if isinstance(seq, (int, float)) and not isinstance(seq, bool) else None


class ResyncRedisManager(RoomIndexMixin, socketio.RedisManager):
    """A RedisManager that reports resubscriptions and drops out-of-order task events."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_resubscribe: Callable[[], None] | None = None
        # Called with the subscription's socket after every (re)subscribe: run.py gives it priority
        # on the web process's hub (app/hub.py), so relays never wait behind a storm of sockets.
        self.on_subscribed: Callable[[Any], None] | None = None
        self._newest: OrderedDict[str, float] = OrderedDict()  # task_id -> newest seq relayed
        # task_id -> (when noted, {sid: seq of the snapshot row that socket was sent})
        self._snapshots: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()

    def _handle_emit(self, message: dict) -> None:
        """Relay an event from Redis, except a `task_progress` not newer than one already relayed.

        Several processes publish for one task (the worker's progress, the web's cancel, a sweep):
        Redis keeps each publisher's order, not the order between them. The row's `seq` restores it:
        a late `started` must not reopen a canceled bar, nor progress go backwards on a page.
        """
        data = message.get("data")
        if isinstance(data, list) and len(data) == 1:  # python-socketio 5.x publishes the args as a list
            data = data[0]
        progress = message.get("event") == "task_progress" and isinstance(data, dict) and "task_id" in data
        if progress:
            PROGRESS_IN.inc()  # issue 9: /metrics
        if self._nobody_here(message):
            # Every server gets every event; python-socketio would build and encode its packet before
            # finding nobody to send it to. Two servers, 30,000 events, half for each one's users:
            # 1.44-1.54 -> 1.10-1.13 CPU-s per server. Its task's order needs no note: a socket
            # that joins the room later gets the row's state as a snapshot, and skips older events.
            return
        if progress:
            if not self._admit(data):
                PROGRESS_SUPPRESSED.inc()
                return
            PROGRESS_OUT.inc()
            message = self._skip_ahead_sockets(message, data)
        super()._handle_emit(message)

    def _nobody_here(self, message: dict) -> bool:
        """Whether the message is for one room that has no socket on this server (and wants no reply)."""
        room = message.get("room")
        return (isinstance(room, str) and message.get("callback") is None
                and room not in self.rooms.get(message.get("namespace") or "/", ()))

    def _admit(self, data: dict) -> bool:
        """Record a relayed event; False if it is a repeat or older than the newest of its task."""
        task_id, seq = data["task_id"], event_seq(data)
        newest = self._newest.get(task_id)
        if seq is None:  # no order to go by: at least never relay anything after an end
            if newest == ENDED:
                return False
            if data.get("status") in TERMINAL:
                self._remember(task_id, ENDED)
            return True
        if newest is not None and seq <= newest:
            return False
        self._remember(task_id, seq)
        return True

    def _remember(self, task_id: str, seq: float) -> None:
        self._newest[task_id] = seq
        self._newest.move_to_end(task_id)
        if len(self._newest) > REMEMBERED_TASKS:
            self._newest.popitem(last=False)

    def note_snapshot(self, sids: list[str], data: dict) -> None:
        """Remember that these sockets were just sent this snapshot row (before live events caught up).

        The row can be newer than live events still in flight on the channel (published before it
        was read, relayed after): those must not reach these sockets after it.
        """
        seq = event_seq(data)
        if seq is None or not sids:
            return
        now = time.monotonic()
        _, sent = self._snapshots.pop(data["task_id"], (now, {}))
        sent.update(dict.fromkeys(sids, seq))
        self._snapshots[data["task_id"]] = (now, sent)
        while self._snapshots:  # oldest first: drop what no in-flight event can still concern
            noted_at, _ = next(iter(self._snapshots.values()))
            if now - noted_at < SNAPSHOT_MEMORY and len(self._snapshots) <= REMEMBERED_TASKS:
                break
            self._snapshots.popitem(last=False)

    def _skip_ahead_sockets(self, message: dict, data: dict) -> dict:
        """The message, skipping sockets whose snapshot already showed this event's state or a newer one."""
        entry, seq = self._snapshots.get(data["task_id"]), event_seq(data)
        if entry is None or seq is None:
            return message
        sent = entry[1]
        ahead = [sid for sid, shown in sent.items() if shown >= seq]
        for sid in [sid for sid, shown in sent.items() if shown < seq]:
            del sent[sid]  # the live stream has caught up with that socket
        if not sent:
            del self._snapshots[data["task_id"]]
        if not ahead:
            return message
        skip = message.get("skip_sid") or []
        return {**message, "skip_sid": (skip if isinstance(skip, list) else [skip]) + ahead}

    def is_outdated(self, data: dict) -> bool:
        """Whether this server already relayed a newer event of the task than `data` (a snapshot row).

        Connections join their room before the snapshot is read, so such a newer event has reached
        them already: sending the older snapshot after it would move their bar backwards.
        """
        newest, seq = self._newest.get(data["task_id"]), event_seq(data)
        return newest is not None and seq is not None and newest > seq

    def _redis_listen_with_retries(self) -> Iterator[dict]:  # pragma: no cover - driven by a real Redis
        retry_sleep = 0.5
        subscribed = False
        first = True
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    self.pubsub.subscribe(self.channel)
                    subscribed = True
                    if self.on_subscribed is not None:
                        self.on_subscribed(self.pubsub.connection._sock)  # redis-py keeps no public handle
                    retry_sleep = 0.5
                    # The first subscription too: the listener starts with the first connection, so
                    # sockets that connected before it subscribed (a restarted server's reconnecting
                    # pages, or Redis down when the server came up) may have missed events meanwhile.
                    if self.on_resubscribe is not None:
                        if not first:
                            self._get_logger().info("Redis subscription restored; re-sending task snapshots")
                        self.on_resubscribe()
                    first = False
                yield from self.pubsub.listen()
            except Exception as exc:  # any failure: reconnect, as the parent class does
                self._get_logger().error(
                    f"Cannot receive from redis... retrying in {retry_sleep} secs",
                    extra={"redis_exception": str(exc)},
                )
                subscribed = False
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, MAX_RETRY_SLEEP)
