"""Socket limits: the per-user cap, refused sockets closed at once, and one client's flood of
packets not slowing anyone else (a real eventlet server, the flood from another process)."""
from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time

import pytest
import sqlalchemy as sa
import websocket

from app.extensions import db
from app.models import User, UserSession
from tests.conftest import AuthActions
from tests.harness import Stack, new_user, wait_until

FLOOD_SECONDS = 6.0


def socket_client(app, flask_client):
    """A Socket.IO test client with the browser's cookies."""
    return app.extensions["socketio"].test_client(app, flask_test_client=flask_client)


def test_sockets_per_user_capped(app, make_user):
    """Past MAX_SOCKETS_PER_USER concurrent sockets a user's next one is refused; closing one frees a slot;
    other users are not affected."""
    make_user("alice")
    make_user("bob")
    app.config["MAX_SOCKETS_PER_USER"] = 3
    alice = app.test_client()
    AuthActions(alice).login("alice")
    bob = app.test_client()
    AuthActions(bob).login("bob")
    open_ = [socket_client(app, alice) for _ in range(3)]
    assert all(s.is_connected() for s in open_)
    assert not socket_client(app, alice).is_connected()
    # The refused socket left nothing behind: not in the count, not in the set logout closes.
    assert app.extensions["redis"].zcard(user_sockets_key_of(app, "alice")) == 3
    assert app.extensions["redis"].scard(logout_set_of(app, "alice")) == 3
    assert socket_client(app, bob).is_connected()
    open_[0].disconnect()
    # The close is taken off the count by a batched Redis pipeline a moment later (app.sockets._Forgetter).
    wait_until(lambda: socket_client(app, alice).is_connected(), 5, "a slot freed by the closed socket")


def user_sockets_key_of(app, username: str) -> str:
    """The Redis sorted set that counts a user's sockets."""
    from app.socket_limits import user_sockets_key

    with app.app_context():
        return user_sockets_key(db.session.scalar(sa.select(User.id).where(User.username == username)))


def logout_set_of(app, username: str) -> str:
    """The Redis set of the sockets of a user's only login session (what logout closes)."""
    from app.sockets import session_sockets_key

    with app.app_context():
        (session_id,) = db.session.scalars(sa.select(UserSession.id).join(User).where(User.username == username))
        return session_sockets_key(session_id)


# --- against a real server -------------------------------------------------------------------------

def ws_url(stack: Stack) -> str:
    """The engine.io websocket endpoint of the first web server."""
    return stack.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"


def open_namespace(stack: Stack, cookie: str | None) -> tuple[websocket.WebSocket, str]:
    """A raw websocket that opened the engine.io session and asked for the default namespace."""
    ws = websocket.create_connection(ws_url(stack), header=[f"Cookie: {cookie}"] if cookie else [], timeout=5)
    assert ws.recv().startswith("0")  # engine.io OPEN
    ws.send("40")
    return ws, ws.recv()


def closed_within(ws: websocket.WebSocket, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (answering pings would not help)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = ws.recv()
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        if message == "" or message is None:
            return True
        if message == "2":
            ws.send("3")  # a pong: the client stays as alive as it can
    return False


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_refused_socket_is_closed_at_once(stack: Stack):
    """An anonymous socket gets the refusal with its reason, then the server closes the connection."""
    ws, answer = open_namespace(stack, None)
    assert answer.startswith("44") and "Log in" in answer
    assert closed_within(ws, 3)


def flood(url: str, cookie: str, seconds: float, out: multiprocessing.Queue) -> None:
    """Another process: send client events as fast as possible, reconnecting whenever cut off."""
    os.nice(5)  # an attacker's own CPU is not the server's: do not let the test client starve it
    sent = connections = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ws = websocket.create_connection(url, header=[f"Cookie: {cookie}"], timeout=5)
            connections += 1
            ws.recv()
            ws.send("40")
            packet = '42["flood",' + json.dumps("x" * 100) + "]"
            while time.monotonic() < deadline:
                ws.send(packet)
                sent += 1
        except (websocket.WebSocketException, ConnectionError, OSError):
            continue
    out.put((sent, connections))


def page_and_event_latency(stack: Stack, user, rounds: int = 15) -> tuple[float, float]:
    """Median seconds for a page load, and for a new socket to receive the user's snapshot event."""
    pages, events = [], []
    for _ in range(rounds):
        started = time.monotonic()
        assert user.get("/index").status_code == 200
        pages.append(time.monotonic() - started)
        started = time.monotonic()
        watcher = user.socket(reconnection=False)
        watcher.wait_for(lambda e: True, timeout=30, what="the snapshot")
        events.append(time.monotonic() - started)
        watcher.close()
    return statistics.median(pages), statistics.median(events)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_one_socket_flood_does_not_slow_anyone_else(stack: Stack):
    """While one user's socket floods the server with events, another user's page loads and socket
    events stay within 2x of their idle latency; the flooding socket is cut off."""
    victim = new_user(stack)
    victim.export()  # the victim's socket snapshot then always holds this task: an event to wait for
    attacker = new_user(stack)
    idle_page, idle_event = page_and_event_latency(stack, victim)

    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    flooder = multiprocessing.get_context("spawn").Process(
        target=flood, args=(ws_url(stack), attacker.cookie_header(), FLOOD_SECONDS, queue))
    flooder.start()
    try:
        time.sleep(1.0)  # the flood is under way before measuring (its own start-up is not measured)
        busy_page, busy_event = page_and_event_latency(stack, victim, rounds=8)
        sent, connections = queue.get(timeout=FLOOD_SECONDS + 30)
    finally:
        flooder.join(timeout=30)
        if flooder.is_alive():
            flooder.kill()
    print(f"idle page {idle_page * 1000:.1f} ms, event {idle_event * 1000:.1f} ms; during a flood of {sent} "
          f"packets over {connections} connections: page {busy_page * 1000:.1f} ms, event {busy_event * 1000:.1f} ms")
    assert connections > 1, "the flooding socket was never cut off"
    # A 10 ms floor on the idle figures: below that, scheduler noise on a shared machine dominates.
    assert busy_page <= 2 * max(idle_page, 0.010)
    assert busy_event <= 2 * max(idle_event, 0.010)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_web_server_listens_with_a_deep_backlog(stack: Stack):
    """The eventlet server's listening socket queues a storm of connects (LISTEN_BACKLOG, default 4096,
    capped by net.core.somaxconn) instead of eventlet's 50, past which the kernel dropped handshakes."""
    import subprocess

    with open("/proc/sys/net/core/somaxconn") as fh:
        expected = min(4096, int(fh.read()))
    out = subprocess.run(["ss", "-Hltn", f"sport = :{stack.ports[0]}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[2]) == expected, out  # State Recv-Q Send-Q …: a listener's Send-Q is its backlog


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_web_server_runs_on_the_relay_first_hub_with_pings_on_its_timers(stack: Stack):
    """`python run.py` (eventlet) runs app/hub.py's hub, which keeps the relay ahead of socket storms,
    and schedules idle sockets' pings on its timers (app/ping_timers.py), not a green thread each."""
    started = stack.webs[0].log_path.read_text()
    assert "(eventlet, hub RelayFirstHub, pings on hub timers)" in started, started[-2000:]
