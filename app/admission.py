"""Admission of new Socket.IO connections, of page requests and of closes, at a pace the hub can absorb.

A storm of connects (a server restart, a network blip) would otherwise put thousands of half-done
handshakes in the hub's run queue at once, and every relay to users already connected waits a
whole round of them. Here at most SLOTS new connections are between their first request and the
end of `on_connect` at once; the rest wait (a green wait: the relays keep flowing). The gate paces;
it never refuses. A slot is a lease: a client that opens a socket and never finishes its handshake
loses its slot after LEASE seconds, so a few stalled clients cannot hold the door shut.
"""
from __future__ import annotations

import tempfile
import threading
import time
from contextvars import ContextVar
from typing import Any, Callable, Iterable

from app.tcp import send_at_once

ENVIRON_KEY = "microblog.admitted"  # the callable on_connect calls once it is done


class LeasedSlots:
    """A green semaphore whose slots are leases: a holder past `lease` seconds loses its slot to the next.

    Waiters block on the semaphore alone and wake once, when a slot is theirs or their wait is over.
    One reaper thread (green under eventlet's monkey patch) frees the slots of stalled holders. It
    used to be every waiter's job, each waking once per lease to look: with 5,000 connects queued at
    the gate (a storm, since the listen backlog holds them) that was 2,500 wake-ups a second on the
    hub, every one of them walking the holders. threading.Semaphore has no leases, and neither has
    eventlet's or gevent's; hence this class.
    """

    def __init__(self, slots: int, lease: float) -> None:
        self.slots = threading.BoundedSemaphore(slots)  # green under eventlet's monkey patch
        self.lease = lease
        # release -> when its slot was taken; insertion order is take order, so the first is the oldest
        self.holders: dict[Callable[[], None], float] = {}
        self._holding = threading.Event()  # set while anyone holds a slot: the reaper sleeps on it
        self._reaper: threading.Thread | None = None

    def take(self, wait: float) -> Callable[[], None] | None:
        """Wait up to `wait` seconds for a slot; its release (idempotent), or None if none came."""
        if not self.slots.acquire(timeout=wait):
            return None
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                self.holders.pop(release, None)
                self.slots.release()

        self.holders[release] = time.monotonic()
        self._holding.set()
        if self._reaper is None:  # started by the first take, not by the app factory: nothing at import
            self._reaper = threading.Thread(target=self._reap_forever, name="lease-reaper", daemon=True)
            self._reaper.start()
        return release

    def _reap_forever(self) -> None:
        """Sleep until the oldest lease ends, free the slots of holders past it; idle while none holds."""
        while True:
            self._holding.wait()
            oldest = next(iter(self.holders.values()), None)
            if oldest is None:
                self._holding.clear()
                if self.holders:  # a take came between the two lines (OS threads): its set was cleared
                    self._holding.set()
                continue
            due = oldest + self.lease - time.monotonic()
            if due > 0:
                time.sleep(due)
                continue
            self.reap()

    def reap(self) -> int:
        """Free the slots of holders past their lease; how many."""
        now, freed = time.monotonic(), 0
        for release, since in list(self.holders.items()):
            if now - since < self.lease:
                break  # take order: the rest are younger
            release()  # a stalled holder: its slot goes to the next one waiting
            freed += 1
        return freed


class ConnectAdmission:
    """WSGI middleware: a semaphore around the handshake of every new Engine.IO connection."""

    def __init__(self, wsgi_app: Callable, slots: int, lease: float = 2.0, wait: float = 60.0) -> None:
        self.wsgi_app = wsgi_app
        self.gate = LeasedSlots(slots, lease)
        self.wait = wait

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        if "EIO=" not in query or "sid=" in query:  # pages, and packets of established sessions
            return self.wsgi_app(environ, start_response)
        # Paces, never refuses: after `wait` seconds without a slot the handshake goes in anyway.
        release = self.gate.take(self.wait) or (lambda: None)
        environ[ENVIRON_KEY] = release
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            release()  # a websocket returns only when it closes; polling at once


class PageAdmission:
    """WSGI middleware: at most SLOTS page requests run the application at once.

    On eventlet's hub a page is one long stretch of CPU (the ORM, Jinja; SQLite's queries do not
    even yield), and the hub runs every ready greenlet in turn: with 200 pages in flight, the
    greenlet relaying a user's progress event waits behind all of them (a second and more, measured
    by `make bench`'s push_pages). Here the pages queue on a green semaphore, so the relays wait at
    most SLOTS pages; throughput stays what one core gives. Socket.IO traffic passes by (ConnectAdmission
    paces it). A page that waits longer than `wait` seconds gets a 503 with Retry-After.

    A slot is a lease of `lease` seconds (PAGE_LEASE_MS), far longer than any page's CPU: a page that holds it longer
    is waiting on I/O (a database or Redis that is slow or down, where each call may wait for its
    connect timeout), and the next page goes in. So the gate orders CPU, and an outage degrades to
    the ungated behaviour instead of queueing every page behind one that waits.
    """

    BUSY = b"The server is busy; try again in a few seconds.\n"

    def __init__(self, wsgi_app: Callable, slots: int, wait: float = 30.0, max_body: int | None = None,
                 lease: float = 0.5) -> None:
        self.wsgi_app = wsgi_app
        self.gate = LeasedSlots(slots, lease)
        self.wait = wait
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if "EIO=" in environ.get("QUERY_STRING", ""):
            return self.wsgi_app(environ, start_response)
        self._buffer_body(environ)
        release = self.gate.take(self.wait)
        if release is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"),
                                                       ("Retry-After", "5"), ("Content-Length", str(len(self.BUSY)))])
            return [self.BUSY]
        in_page = _in_page.set(True)  # the view's queries and template give the hub turns (yield_inside_pages)
        try:
            # A page never yields while it runs, so a gate alone would never have waiters: the hub
            # wakes every ready connection in one poll and runs them back to back. Yielding once while
            # holding the slot makes the rest of that batch wait here, and the relays run in between.
            time.sleep(0)
            # The view runs here; a streamed body (a download) is sent after the slot is free.
            return self.wsgi_app(environ, start_response)
        finally:
            _in_page.reset(in_page)
            release()

    def _buffer_body(self, environ: dict[str, Any]) -> None:
        """Read a request's body from the client before the page takes a slot.

        The view would read it inside the slot, and a slow upload (an import file over a bad line,
        or a client that never sends its body) would hold every other page at the door. Bodies over
        the app's limit are left unread: Flask refuses them with a 413 without reading. A chunked
        body (no Content-Length; browsers never send one) is still read inside the slot.
        """
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        if length <= 0 or (self.max_body is not None and length > self.max_body):
            return
        body = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # big uploads go to disk, not memory
        stream, left = environ["wsgi.input"], length
        while left > 0:
            chunk = stream.read(min(left, 64 * 1024))
            if not chunk:  # the client stopped short: the view sees what came, as it would have
                break
            body.write(chunk)
            left -= len(chunk)
        body.seek(0)
        environ["wsgi.input"] = body


def yield_inside_pages(app: Any, engine: Any) -> None:
    """Let the relays run between a page's queries, and before its template.

    A page holds its slot (PageAdmission) from its first query to its last byte of HTML, and a
    progress event that arrives meanwhile waited all of it (`make bench`'s push_pages, same day:
    p50 / p99 9.1 / 29 ms). A turn of the hub after each query and before the template cuts that
    wait to the stretch between two of them (4.1 / 10.9 ms); the other pages still wait at the door.
    Only pages in PageAdmission's slot: a socket's connect has its own pacing (ConnectAdmission), and
    every turn of the hub costs a storm CPU it has none to spare of.
    Never while the page holds SQLite's write lock: a greenlet that then wrote would wait for it in
    SQLite's busy handler, which sleeps without yielding, so the page could not go on to commit.
    """
    from flask import before_render_template
    from sqlalchemy import event

    before_render_template.connect(_yield_before_rendering, app, weak=False)
    event.listen(engine, "after_cursor_execute", _yield_after_query)
    event.listen(engine, "commit", _lock_released)
    event.listen(engine, "rollback", _lock_released)


# Whether this greenlet runs a page inside its slot, and whether its last query left its SQLite
# connection inside a write transaction.
_in_page: ContextVar[bool] = ContextVar("in_page", default=False)
_writing: ContextVar[bool] = ContextVar("writing", default=False)


def _yield_after_query(conn: Any, cursor: Any, *args: Any) -> None:
    """SQLAlchemy's after_cursor_execute: in a page, one turn of the hub (time.sleep is green here), unless writing."""
    # sqlite3 opens its transaction at the first write; other drivers' connections have no such flag
    # and wait cooperatively anyway.
    writing = bool(getattr(cursor.connection, "in_transaction", False))
    _writing.set(writing)
    if _in_page.get() and not writing:
        time.sleep(0)


def _lock_released(conn: Any) -> None:
    """SQLAlchemy's commit and rollback: the write transaction, if any, is over."""
    _writing.set(False)


def _yield_before_rendering(sender: Any, **extra: Any) -> None:
    """Flask's before_render_template: one turn of the hub, unless writing."""
    if _in_page.get() and not _writing.get():
        time.sleep(0)


class DisconnectPacing:
    """Runs the close handling of ended connections a few at a time.

    When thousands of clients leave at once (a network blip, a proxy restart), their reader
    greenlets all wake in one turn of the hub, and each would run its whole close (Socket.IO's
    bookkeeping, our handler) back to back: 5,000 closes were one 2.5 s stall of every relay
    (`make bench`'s storm). Here each close waits for a slot and yields once inside it, so a relay
    waits behind at most `slots` closes; the storm takes longer to absorb, nobody else waits for it.
    A close does no I/O, so unlike the gates above it needs no lease (nor LeasedSlots' reaper).
    Paces, never refuses: a close that waited `wait` seconds goes ahead anyway.
    """

    def __init__(self, slots: int = 1, wait: float = 60.0) -> None:
        self.slots = threading.Semaphore(slots)  # green under eventlet's monkey patch
        self.wait = wait

    def __call__(self, close: Callable[[], Any]) -> Any:
        """Run `close` in its turn; its result."""
        got = self.slots.acquire(timeout=self.wait)
        try:
            time.sleep(0)  # see PageAdmission: the rest of this turn's closes wait at the door
            return close()
        finally:
            if got:
                self.slots.release()


class PacedListener:
    """The server's listening socket, yielding to the hub after each connection it accepts, and
    handing out connections that send each write at once (TCP_NODELAY).

    eventlet's WSGI server accepts in a loop that only yields once the kernel's queue is empty: a
    storm of 5,000 queued connects became 5,000 green threads started in one turn of the hub, each
    parsing its request before any gate (a 1 s stall of every relay). One accept per turn keeps a
    turn's work to a connection or two; the hub turns over thousands of times a second.

    With Nagle's algorithm on (app/tcp.py), once per ping interval the events that followed a
    socket's PING reached it 32-38 ms late, waiting for the client's delayed ACK (the constant ~34 ms
    worst case of `make bench`'s idle push; with TCP_NODELAY, 5.4-6.1 ms in three runs). eventlet's
    server does not set the option; uvicorn and tornado do.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def accept(self) -> tuple[Any, Any]:
        """Accept one connection, then let the rest of the hub run before the next."""
        conn, address = self._sock.accept()
        send_at_once(conn)
        time.sleep(0)
        return conn, address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def admitted(environ: dict[str, Any]) -> None:
    """Free the connection's slot (called at the end of `on_connect`; idempotent)."""
    environ.get(ENVIRON_KEY, lambda: None)()
