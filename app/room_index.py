"""Which rooms each socket is in, so leaving them costs O(its rooms), not O(every room).

python-socketio's `BaseManager.basic_disconnect` (and `get_rooms`) scan every room of the
namespace, and each connected socket has a room of its own: N sockets leaving at once cost
O(N²) of hub time (py-spy: 60% of a disconnect storm in that scan, a 2 s stall at 2,000 sockets).
The same goes for the list of clients being disconnected, kept here as a set.
"""
from __future__ import annotations

from typing import Any

import socketio


class RoomIndexMixin:
    """Mixin for a python-socketio client manager: keeps a sid → rooms index beside `self.rooms`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._memberships: dict[tuple[str, str], set] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        """Enter a room and note it."""
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._memberships.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        """Leave a room and forget it."""
        super().basic_leave_room(sid, namespace, room)
        rooms = self._memberships.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._memberships[(namespace, sid)]

    def pre_disconnect(self, sid: str, namespace: str) -> Any:
        """Mark a client as leaving; a set where BaseManager keeps a list.

        `is_connected` (every emit to a socket, every disconnect) looks the sid up there, and a
        storm of disconnects fills it: a list made that O(N) per lookup, O(N²) for the storm (py-spy:
        a sixth of a 3,000-socket disconnect storm).
        """
        self.pending_disconnect.setdefault(namespace, set()).add(sid)
        return self.rooms[namespace][None].get(sid)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """What BaseManager.basic_disconnect does, with the index instead of a scan of all rooms."""
        if namespace not in self.rooms:
            return
        for room in list(self._memberships.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if namespace in pending and sid in pending[namespace]:
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list:
        """The rooms a client is in (its own included, as python-socketio answers)."""
        return [r for r in self._memberships.get((namespace, sid), ()) if r is not None]


class IndexedManager(RoomIndexMixin, socketio.Manager):
    """The in-process manager (no message queue) with the room index."""
