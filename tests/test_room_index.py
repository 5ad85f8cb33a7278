"""The room index: the same rooms as python-socketio's own manager, without scanning every room."""
from __future__ import annotations

import socketio

from app.room_index import IndexedManager


def drive(manager: socketio.Manager) -> tuple[dict, dict]:
    """Connect 30 sockets of 10 users, move some between rooms, disconnect a third."""
    manager.set_server(socketio.Server(async_mode="threading"))
    manager.initialize()
    sids = [manager.connect(f"eio{i}", "/") for i in range(30)]
    for i, sid in enumerate(sids):
        manager.enter_room(sid, "/", f"user:{i % 10}")
        if i % 4 == 0:
            manager.enter_room(sid, "/", "extra")
    manager.leave_room(sids[4], "/", "extra")
    manager.close_room("user:3", "/")
    for sid in sids[::3]:
        manager.disconnect(sid, "/")
    remaining = {i: sorted(map(str, manager.get_rooms(sid, "/"))) for i, sid in enumerate(sids)}
    shape = {str(room): sorted(members.keys()) for room, members in manager.rooms.get("/", {}).items()}
    # sids differ between managers: compare by position
    index = {sid: str(i) for i, sid in enumerate(sids)}
    shape = {index.get(r, r): sorted(index[s] for s in members) for r, members in shape.items()}
    remaining = {i: sorted(index.get(r, r) for r in rooms) for i, rooms in remaining.items()}
    return shape, remaining


def test_same_rooms_as_python_socketio():
    """Enter, leave, close and disconnect leave exactly the rooms python-socketio's manager would."""
    assert drive(IndexedManager()) == drive(socketio.Manager())


def test_disconnect_forgets_the_socket():
    """A disconnected socket leaves no trace in the index."""
    manager = IndexedManager()
    manager.set_server(socketio.Server(async_mode="threading"))
    manager.initialize()
    sid = manager.connect("eio", "/")
    manager.enter_room(sid, "/", "user:1")
    manager.disconnect(sid, "/")
    assert manager._memberships == {} and manager.rooms.get("/", {}).get("user:1") is None
