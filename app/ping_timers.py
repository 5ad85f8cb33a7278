"""Engine.IO's pings wait on the hub's timers, not in a green thread per socket.

python-engineio starts a green thread per socket that sleeps through the ping interval (25 s) and
then queues a PING. A sleeping green thread keeps its saved C stack and its own chunk of Python
frames: 10,000 of them took 7.5 KiB resident each, a hub timer 0.2 KiB (eventlet 0.41, Python
3.11). At 10,000 idle sockets that was a tenth of the web process. Here the wait is a timer on the
hub, and the PING is queued by a green thread that lives only while it does so, so an idle socket
holds two green threads (its reader and its writer), not three.

engine.io has no option for this (`Socket.schedule_ping` starts the thread), hence the
replacement of that one method in the eventlet web process (`run.py`). The rule (one ping per
completed cycle), the packet and the timeout check stay engine.io's own.
"""
from __future__ import annotations

import time
from typing import Any

import engineio.packet
import engineio.socket


def schedule_ping(sock: Any) -> None:
    """`Socket.schedule_ping` on a hub timer: the next PING goes out one ping interval from now."""
    import eventlet
    from eventlet import hubs

    # Only after the previous cycle completed (the client answered its PING), as engine.io does.
    if sock.last_ping:
        sock.last_ping = None
        # The timer runs in the hub's own greenlet, which must never block: it only starts the
        # short green thread that queues the packet.
        hubs.get_hub().schedule_call_global(sock.server.ping_interval, eventlet.spawn_n, send_ping, sock)


def send_ping(sock: Any) -> None:
    """Queue a PING for a socket that is still open (engine.io's `_send_ping` after its sleep)."""
    if not sock.closing and not sock.closed:
        sock.last_ping = time.time()
        sock.send(engineio.packet.Packet(engineio.packet.PING))


def install() -> None:
    """Make every engine.io socket of this process schedule its pings on the hub (eventlet only)."""
    engineio.socket.Socket.schedule_ping = schedule_ping


def installed() -> bool:
    """Whether this process's engine.io sockets schedule their pings here (what the start line reports)."""
    return engineio.socket.Socket.schedule_ping is schedule_ping
