"""Metrics that belong to one web process (its sockets, the events it relays).

Kept apart from app.ops.metrics so app/sockets.py and app/socket_queue.py import only
prometheus_client through it, never the database collectors.
"""
from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

SOCKETS_CONNECTED = Gauge("microblog_sockets_connected", "Socket.IO connections open on this web process.",
                          registry=REGISTRY)
PROGRESS_EVENTS = Counter("microblog_progress_events", "task_progress events through this web process: "
                          "'in' received from the message queue, 'out' relayed to sockets, "
                          "'suppressed' dropped as repeats of a task's end.",
                          ["direction"], registry=REGISTRY)
for _direction in ("in", "out", "suppressed"):
    PROGRESS_EVENTS.labels(_direction)  # every series exists from the start (rate() needs a zero)
