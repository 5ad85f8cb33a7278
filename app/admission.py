"""Admission of new Socket.IO connections at a pace the hub can absorb.

A storm of connects (a server restart, a network blip) would otherwise put thousands of half-done
handshakes in the hub's run queue at once, and every relay to users already connected waits a
whole round of them. Here at most SLOTS new connections are between their first request and the
end of `on_connect` at once; the rest wait (a green wait: the relays keep flowing). The gate paces;
it never refuses. A slot is a lease: a client that opens a socket and never finishes its handshake
loses its slot after LEASE seconds, so a few stalled clients cannot hold the door shut.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

ENVIRON_KEY = "microblog.admitted"  # the callable on_connect calls once it is done


class ConnectAdmission:
    """WSGI middleware: a semaphore around the handshake of every new Engine.IO connection."""

    def __init__(self, wsgi_app: Callable, slots: int, lease: float = 2.0, wait: float = 60.0) -> None:
        self.wsgi_app = wsgi_app
        self.slots = threading.BoundedSemaphore(slots)  # green under eventlet's monkey patch
        self.lease, self.wait = lease, wait
        self.holders: dict[Callable[[], None], float] = {}  # release → when its slot was taken

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        if "EIO=" not in query or "sid=" in query:  # pages, and packets of established sessions
            return self.wsgi_app(environ, start_response)
        held = [self._acquire()]

        def admitted() -> None:
            if held[0]:
                held[0] = False
                self.holders.pop(admitted, None)
                self.slots.release()

        if held[0]:
            self.holders[admitted] = time.monotonic()
        environ[ENVIRON_KEY] = admitted
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            admitted()  # a websocket returns only when it closes; polling at once

    def _acquire(self) -> bool:
        """Wait for a slot, reclaiming those held longer than the lease; False after `wait` seconds."""
        deadline = time.monotonic() + self.wait
        while not self.slots.acquire(timeout=self.lease):
            now = time.monotonic()
            for release, since in list(self.holders.items()):
                if now - since > self.lease:
                    release()  # a stalled handshake: its slot goes to the next connection
            if now > deadline:
                return False
        return True


def admitted(environ: dict[str, Any]) -> None:
    """Free the connection's slot (called at the end of `on_connect`; idempotent)."""
    environ.get(ENVIRON_KEY, lambda: None)()
