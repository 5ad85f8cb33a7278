"""The connect gate: new sockets pass a few at a time; a stalled one loses its slot after the lease."""
from __future__ import annotations

import threading
import time

from app.admission import ConnectAdmission, admitted

NEW_SOCKET = {"QUERY_STRING": "EIO=4&transport=websocket", "PATH_INFO": "/socket.io/"}


class Handshakes:
    """A WSGI app whose requests record when they entered and wait until the test lets them finish."""

    def __init__(self) -> None:
        self.entered: list[tuple[str, float]] = []
        self.finish = threading.Event()

    def __call__(self, environ, start_response):
        self.entered.append((environ["name"], time.monotonic()))
        if environ.get("done_at_once"):
            admitted(environ)  # what on_connect does at its end
        if not environ.get("quick"):
            self.finish.wait(5)
        return [b""]


def request(gate: ConnectAdmission, name: str, **extra) -> threading.Thread:
    thread = threading.Thread(target=gate, args=({**NEW_SOCKET, "name": name, **extra}, None), daemon=True)
    thread.start()
    return thread


def test_connects_pass_one_slot_at_a_time_and_stalled_ones_lose_it():
    """With one slot, a socket that finished its connect lets the next in at once; a stalled one after the lease."""
    app = Handshakes()
    gate = ConnectAdmission(app, slots=1, lease=0.3, wait=5)
    began = time.monotonic()
    threads = [request(gate, "stalled")]
    time.sleep(0.05)
    threads.append(request(gate, "second", done_at_once=True))
    threads.append(request(gate, "third", done_at_once=True))
    deadline = time.monotonic() + 3
    while len(app.entered) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    app.finish.set()
    for t in threads:
        t.join(5)
    names = [n for n, _ in app.entered]
    assert names[0] == "stalled" and sorted(names[1:]) == ["second", "third"]
    second_at = app.entered[1][1] - began
    third_at = app.entered[2][1] - began
    assert second_at >= 0.3  # waited for the stalled socket's lease
    assert third_at - second_at < 0.25  # the second finished its connect: its slot was free at once


def test_pages_and_established_sockets_pass_ungated():
    """Page requests and packets of existing sessions never wait at the gate."""
    app = Handshakes()
    gate = ConnectAdmission(app, slots=1, lease=10, wait=10)
    holder = request(gate, "holder")  # holds the only slot until the test lets it finish
    time.sleep(0.05)
    for query in ("", "EIO=4&transport=polling&sid=x"):
        began = time.monotonic()
        gate({"QUERY_STRING": query, "name": query, "quick": True}, None)
        assert time.monotonic() - began < 1
    app.finish.set()
    holder.join(5)
