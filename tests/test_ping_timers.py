"""Engine.IO's pings on hub timers (app/ping_timers.py): no green thread sleeps through an idle
socket's ping interval, and a real server still pings live sockets and drops silent ones."""
from __future__ import annotations

import gc
import json
import time

import engineio
import engineio.packet
import engineio.socket
import eventlet
import greenlet
import pytest
import websocket

from app import ping_timers
from tests.harness import Stack, new_user


def live_greenlets() -> int:
    """Green threads that have started and not finished (each keeps its stack while it waits)."""
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and o and not o.dead)


@pytest.mark.parametrize("timers", [False, True], ids=["engineio", "timers"])
def test_waiting_sockets_hold_no_green_thread_and_still_get_their_ping(monkeypatch, timers):
    """100 sockets waiting for their next ping: engine.io's own method holds a sleeping green thread
    for each; the timers hold none. Either way each socket gets its PING once the interval is over."""
    monkeypatch.setattr(engineio.socket.Socket, "schedule_ping", engineio.socket.Socket.schedule_ping)
    if timers:
        ping_timers.install()
    server = engineio.Server(async_mode="eventlet", ping_interval=0.2, ping_timeout=5)
    sockets = [engineio.socket.Socket(server, f"sid{i}") for i in range(100)]
    eventlet.sleep(0)  # the hub's own green thread is running before the count
    before = live_greenlets()
    for sock in sockets:
        sock.schedule_ping()
    eventlet.sleep(0)  # engine.io's threads start and go to sleep
    waiting = live_greenlets() - before
    eventlet.sleep(0.5)
    got = [sock.queue.get(block=False) for sock in sockets]
    assert all(p.packet_type == engineio.packet.PING for p in got)
    assert all(sock.last_ping for sock in sockets)  # the timeout check runs from the ping, as before
    assert waiting == (0 if timers else 100)


def test_no_ping_for_a_closed_socket(monkeypatch):
    """A socket closed while its ping waited gets nothing queued."""
    monkeypatch.setattr(engineio.socket.Socket, "schedule_ping", engineio.socket.Socket.schedule_ping)
    ping_timers.install()
    server = engineio.Server(async_mode="eventlet", ping_interval=0.1, ping_timeout=5)
    sock = engineio.socket.Socket(server, "sid")
    sock.schedule_ping()
    sock.closed = True
    eventlet.sleep(0.3)
    assert sock.queue.empty()


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_real_server_pings_live_sockets_and_drops_silent_ones(stack: Stack):
    """`python run.py` with SOCKETIO_PING_INTERVAL=1 and SOCKETIO_PING_TIMEOUT=1: a client that answers
    gets a PING about every second and stays; once it stops answering, the server closes it."""
    web = stack.start_web(SOCKETIO_PING_INTERVAL="1", SOCKETIO_PING_TIMEOUT="1")
    user = new_user(stack)
    url = f"ws://127.0.0.1:{web.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, header=[f"Cookie: {user.cookie_header()}"], timeout=10)
    try:
        opening = ws.recv()
        assert json.loads(opening[1:])["pingInterval"] == 1000
        ws.send("40")
        pings: list[float] = []
        while len(pings) < 3:  # each answered: the next cycle starts from the answer
            message = ws.recv()
            if message == "2":
                pings.append(time.monotonic())
                ws.send("3")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert all(0.9 <= gap < 5 for gap in gaps), gaps  # the interval, not a busy loop
        stopped = time.monotonic()
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            while True:  # no more answers: the next PING goes unanswered past the timeout
                if ws.recv() in ("", None):
                    raise ConnectionError("closed")
        assert time.monotonic() - stopped < 10
    finally:
        ws.close()
