"""The web process's eventlet hub: the progress relay never queues behind a storm of sockets.

Measured in a 5,000-socket connect storm (`make bench`'s storm, probes in the hub): the relay's
Redis subscription had its message in the socket within 8 ms, yet waited 300-450 ms to read it.
eventlet asks epoll for up to 1,023 ready sockets at once and runs every one before it polls again;
when thousands of sockets turn ready together (their handshakes arrive, or they all close), each
turn of the hub ran ~1,000 greenlets (110-140 ms), and the kernel's ready list is first come,
first served, so the subscription waited behind three or four such turns. Each of these two
changes alone left p99 at 160-185 ms; together, 16 ms:

- at most MAX_EVENTS ready sockets per turn, so a turn stays a few milliseconds and the timers
  (the relay's next hops: the socket's send queue) run between turns;
- the sockets given to `prioritize` (the relay's subscription) are asked about on their own epoll
  every turn, so they never wait in the shared ready list.

eventlet has no such options (its hubs take every ready socket, in the kernel's order), hence this
subclass. Only `run.py` uses it, after the monkey patch; gevent's libev loop is left as it is.
"""
from __future__ import annotations

import errno
from typing import Any

from eventlet.hubs import epolls
from eventlet.patcher import original

# The monkey patch removes epoll from `select` (green code must not block in it); the hub's own
# poll is the one place that must.
_select = original("select")

MAX_EVENTS = 64  # ready sockets handled per turn of the hub; ~0.1 ms each in a storm

_active: "RelayFirstHub | None" = None


class RelayFirstHub(epolls.Hub):
    """eventlet's epoll hub, with a cap on the sockets handled per turn and sockets that go first."""

    # use_hub asks the hub it is given whether it runs here (and warns when it cannot ask).
    is_available = staticmethod(epolls.is_available)

    def __init__(self, clock: Any = None) -> None:
        global _active
        super().__init__(clock)
        self.priority = _select.epoll()
        self.has_priority = False
        _active = self

    def prioritize(self, fileno: int) -> None:
        """Look at this socket's readiness on every turn, ahead of the shared ready list."""
        try:
            self.priority.register(fileno, _select.EPOLLIN)
        except OSError as exc:
            # A closed socket leaves the epoll by itself, so EEXIST means this very socket again.
            if exc.errno != errno.EEXIST:
                raise
        self.has_priority = True

    def do_poll(self, seconds: float) -> list[tuple[int, int]]:
        """Up to MAX_EVENTS ready sockets, plus whichever priority socket is ready (eventlet dedupes)."""
        ready = self.poll.poll(seconds, MAX_EVENTS)
        if self.has_priority:
            ready.extend(self.priority.poll(0))
        return ready


def prioritize(sock: Any) -> None:
    """Give a socket priority on the running RelayFirstHub; nothing under any other hub or mode."""
    if _active is not None and sock is not None:
        _active.prioritize(sock.fileno())
