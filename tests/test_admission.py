"""The connect gate: new sockets pass a few at a time; a stalled one loses its slot after the lease."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from app.admission import ConnectAdmission, DisconnectPacing, PacedListener, PageAdmission, admitted

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


class Pages:
    """A WSGI app that counts the pages running in it at once and holds each until released."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.lock = threading.Lock()
        self.finish = threading.Event()

    def __call__(self, environ, start_response):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        if not environ.get("quick"):
            self.finish.wait(5)
        with self.lock:
            self.running -= 1
        start_response("200 OK", [])
        return [b"page"]


def test_pages_run_at_most_slots_at_once_and_socket_traffic_passes_by():
    """Two slots: six pages in flight never run more than two at a time; a socket handshake is not held up."""
    from app.admission import PageAdmission

    app = Pages()
    gate = PageAdmission(app, slots=2, wait=5, lease=10)
    threads = [threading.Thread(target=gate, args=({"QUERY_STRING": ""}, lambda *a: None), daemon=True)
               for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3
    while app.running < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    assert gate({**NEW_SOCKET, "quick": True}, lambda *a: None) == [b"page"]
    assert time.monotonic() - began < 1
    app.finish.set()
    for t in threads:
        t.join(5)
    assert app.most == 3  # the two pages, and the handshake that passed by
    assert app.running == 0


def test_a_page_that_waits_too_long_gets_a_503_with_a_reason():
    """A page that cannot get a slot within `wait` is told the server is busy, with Retry-After."""
    from app.admission import PageAdmission

    app = Pages()
    gate = PageAdmission(app, slots=1, wait=0.2, lease=10)
    holder = threading.Thread(target=gate, args=({"QUERY_STRING": ""}, lambda *a: None), daemon=True)
    holder.start()
    time.sleep(0.05)
    answered: list = []
    body = gate({"QUERY_STRING": "", "quick": True}, lambda status, headers: answered.append((status, dict(headers))))
    app.finish.set()
    holder.join(5)
    assert answered[0][0] == "503 Service Unavailable" and answered[0][1]["Retry-After"] == "5"
    assert b"busy" in b"".join(body)


class SlowBody:
    """A request body that arrives only when the test says so (a slow upload)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.arrived = data, threading.Event()

    def read(self, n: int = -1) -> bytes:
        self.arrived.wait(5)
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


def test_a_slow_upload_does_not_hold_the_slot_and_its_view_gets_the_whole_body():
    """With one slot, a page still runs while another request's body is on its way; that body is intact."""
    from app.admission import PageAdmission

    bodies: list[bytes] = []

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            bodies.append(environ["wsgi.input"].read(length))
        start_response("200 OK", [])
        return [b"ok"]

    gate = PageAdmission(app, slots=1, wait=0.5, max_body=1000, lease=10)
    upload = SlowBody(b"posts=" + b"y" * 500)
    slow = threading.Thread(target=gate, args=({"QUERY_STRING": "", "CONTENT_LENGTH": "506", "wsgi.input": upload},
                                               lambda *a: None), daemon=True)
    slow.start()
    time.sleep(0.05)
    answered: list = []
    assert gate({"QUERY_STRING": ""}, lambda status, headers: answered.append(status)) == [b"ok"]
    assert answered == ["200 OK"]  # not a 503: the upload was not holding the slot
    upload.arrived.set()
    slow.join(5)
    assert bodies == [b"posts=" + b"y" * 500]


def test_a_body_over_the_limit_is_left_for_flask_to_refuse():
    """An oversized body is not read (Flask answers 413 without reading it)."""
    from app.admission import PageAdmission

    seen: list = []
    gate = PageAdmission(lambda environ, sr: seen.append(environ["wsgi.input"]) or [b""], slots=1, max_body=10)
    original = SlowBody(b"z" * 100)
    original.arrived.set()
    gate({"QUERY_STRING": "", "CONTENT_LENGTH": "100", "wsgi.input": original}, None)
    assert seen == [original] and original.data == b"z" * 100


def test_a_page_waiting_on_io_past_the_lease_lets_the_next_one_in():
    """One slot: a page stuck on a slow database holds the next page up for about the lease, not until it ends."""
    from app.admission import PageAdmission

    app = Pages()
    gate = PageAdmission(app, slots=1, wait=5, lease=0.1)
    stuck = threading.Thread(target=gate, args=({"QUERY_STRING": ""}, lambda *a: None), daemon=True)
    stuck.start()  # holds the slot until app.finish (5 s at most)
    time.sleep(0.02)
    began = time.monotonic()
    assert gate({"QUERY_STRING": "", "quick": True}, lambda *a: None) == [b"page"]
    waited = time.monotonic() - began
    app.finish.set()
    stuck.join(5)
    assert 0.05 <= waited < 1.0  # it waited its turn (the lease), then went in beside the stuck page


def test_closes_run_one_at_a_time_and_each_gets_its_result():
    """DisconnectPacing: with one slot, concurrent closes never overlap; a failing close frees its slot."""
    pacing = DisconnectPacing(slots=1)
    running, overlaps, results = [0], [], []
    lock = threading.Lock()

    def close(n: int) -> int:
        with lock:
            running[0] += 1
            overlaps.append(running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        if n == 3:
            raise RuntimeError("a handler failed")
        return n

    def one(n: int) -> None:
        try:
            results.append(pacing(lambda: close(n)))
        except RuntimeError:
            results.append("failed")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert max(overlaps) == 1
    assert sorted(r for r in results if r != "failed") == [0, 1, 2, 4, 5, 6, 7] and results.count("failed") == 1


def test_paced_listener_yields_after_each_accept(monkeypatch):
    """PacedListener hands back what accept returned and lets the hub run before the next accept."""
    import app.admission as admission

    class Listening:
        family = socket.AF_UNIX  # so no TCP option is set on the fake connections

        def __init__(self) -> None:
            self.accepted = 0

        def accept(self):
            self.accepted += 1
            conn = SimpleNamespace(name=f"conn{self.accepted}", family=self.family)
            return conn, ("127.0.0.1", 1000 + self.accepted)

    yields = []
    monkeypatch.setattr(admission.time, "sleep", lambda s: yields.append(s))
    listener = PacedListener(Listening())
    conn, address = listener.accept()
    assert (conn.name, address) == ("conn1", ("127.0.0.1", 1001))
    assert listener.accept()[0].name == "conn2"
    assert yields == [0, 0] and listener.family == socket.AF_UNIX


def test_paced_listener_hands_out_connections_that_send_at_once():
    """A real accepted TCP connection has Nagle's algorithm off: an event written right after a
    socket's PING must not wait for the client's (delayed) ACK of it."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        conn, _ = PacedListener(server).accept()
        with conn:
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        client.close()
        server.close()


class CountingSemaphore:
    """A semaphore that counts the times anyone tried to acquire it (each try is a wake-up on the hub)."""

    def __init__(self, inner: threading.BoundedSemaphore) -> None:
        self.inner, self.tries = inner, 0

    def acquire(self, *args, **kwargs) -> bool:
        self.tries += 1
        return self.inner.acquire(*args, **kwargs)

    def release(self) -> None:
        self.inner.release()


def test_waiters_wait_without_polling_and_one_reaper_frees_stalled_slots():
    """50 connects queued behind a stalled one: each waiter tries the semaphore once (it used to retry
    every lease), and the stalled slot is freed by the reaper after its lease, waiters or not."""
    from app.admission import LeasedSlots

    gate = LeasedSlots(1, lease=0.2)
    gate.slots = counting = CountingSemaphore(gate.slots)
    stalled = gate.take(1)  # never released by its holder
    assert stalled is not None
    time.sleep(0.3)
    assert not gate.holders  # the reaper freed it with nobody waiting
    held = gate.take(1)  # and the slot is really free
    assert held is not None
    got: list[bool] = []

    def connect() -> None:
        release = gate.take(3)
        got.append(release is not None)
        if release:
            release()  # its handshake is done

    waiters = [threading.Thread(target=connect, daemon=True) for _ in range(50)]
    for w in waiters:
        w.start()
    time.sleep(0.1)  # every waiter is blocked on `held`, which stalls for its whole lease
    for w in waiters:
        w.join(5)
    assert got == [True] * 50  # the reaper freed the stalled slot, then each passed it on
    # 2 takes before, then 50 waiters once each: polling every lease would have been hundreds
    assert counting.tries == 52


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pages_yield_after_each_query_and_before_the_template_but_never_while_writing(app, make_user, monkeypatch):
    """A page in its slot gives the hub a turn after each SELECT and before rendering; once it has
    written to SQLite (the write lock held) it gives none until its commit or rollback. Outside a
    page's slot (a socket's connect, the sweep) a query gives none."""
    from flask import render_template_string

    from app import admission
    from app.extensions import db
    from app.models import Post

    turns: list[str] = []
    monkeypatch.setattr(admission.time, "sleep", lambda seconds: turns.append("turn"))
    user = make_user("alice")
    with app.app_context():
        admission.yield_inside_pages(app, db.engine)
    with app.test_request_context("/"):
        db.session.scalar(sa.select(Post.id).limit(1))
        render_template_string("x")
        assert turns == []  # not a page in its slot
    in_page = admission._in_page.set(True)  # what PageAdmission sets around the view
    try:
        in_a_page(app, user.id, turns)
    finally:
        admission._in_page.reset(in_page)


def in_a_page(app, user_id: int, turns: list[str]) -> None:
    """The queries and templates of one page, with the turns they gave checked after each step."""
    from flask import render_template_string

    from app.extensions import db
    from app.models import Post

    with app.test_request_context("/"):
        db.session.scalar(sa.select(Post.id).limit(1))
        assert turns == ["turn"]
        render_template_string("x")
        assert turns == ["turn", "turn"]
        db.session.add(Post(body="hello", user_id=user_id))
        db.session.flush()  # the INSERT: sqlite3 opened its write transaction
        db.session.scalar(sa.select(Post.id).limit(1))
        render_template_string("x")
        assert turns == ["turn", "turn"]
        db.session.commit()
        render_template_string("x")
        db.session.scalar(sa.select(Post.id).limit(1))
        assert turns == ["turn"] * 4
        db.session.add(Post(body="again", user_id=user_id))
        db.session.flush()
        db.session.rollback()
        render_template_string("x")
        assert turns == ["turn"] * 5


def test_page_admission_marks_the_view_as_a_page_and_unmarks_it_after():
    """The queries of a view behind PageAdmission know they run in a page's slot; afterwards they do not."""
    from app import admission

    seen = []

    def view(environ, start_response):
        seen.append(admission._in_page.get())
        return [b"ok"]

    gate = PageAdmission(view, 1)
    gate({"PATH_INFO": "/index", "QUERY_STRING": ""}, lambda *a: None)
    assert seen == [True] and admission._in_page.get() is False
    gate({**NEW_SOCKET}, lambda *a: None)  # Socket.IO traffic passes by, unmarked
    assert seen == [True, False]
