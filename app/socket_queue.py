"""The socket server's Redis message queue, with a hook for when its subscription comes back.

Redis pub/sub is at-most-once: events published while a server was not subscribed are lost.
python-socketio's RedisManager resubscribes by itself but tells nobody, with a back-off that
grows to 60 s. This subclass caps the back-off and calls `on_resubscribe` after every
reconnection, so the server can re-send each connected user's snapshot (CONTRACT: within 10 s).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Iterator

import socketio

from app.room_index import RoomIndexMixin

MAX_RETRY_SLEEP = 4.0
TERMINAL = frozenset({"finished", "failed", "canceled"})
# Tasks whose end this server has relayed; old ones fall out (a task ends once, early in its life).
REMEMBERED_ENDINGS = 50_000


class ResyncRedisManager(RoomIndexMixin, socketio.RedisManager):
    """A RedisManager that reports resubscriptions."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_resubscribe: Callable[[], None] | None = None
        self._ended: OrderedDict[str, None] = OrderedDict()

    def _handle_emit(self, message: dict) -> None:
        """Relay an event from Redis, except `task_progress` for a task whose end was already relayed.

        Two processes may publish for one task (the worker's progress, the web's cancel): Redis
        keeps each publisher's order, not the order between them. A late `started` must not
        reopen a canceled bar, nor a second terminal event reach a page.
        """
        data = message.get("data")
        if message.get("event") == "task_progress" and isinstance(data, dict) and "task_id" in data:
            task_id = data["task_id"]
            if task_id in self._ended:
                return
            if data.get("status") in TERMINAL:
                self._ended[task_id] = None
                if len(self._ended) > REMEMBERED_ENDINGS:
                    self._ended.popitem(last=False)
        super()._handle_emit(message)

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
                    retry_sleep = 0.5
                    if not first and self.on_resubscribe is not None:
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
