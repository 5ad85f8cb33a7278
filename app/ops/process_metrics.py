"""Metrics that belong to one web process (its sockets, the events it relays).

Kept apart from app.ops.metrics so app/sockets.py and app/socket_queue.py import only
prometheus_client through it, never the database collectors.
"""
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

disable_created_metrics()  # no `_created` series: they double every counter for no use here

REGISTRY = CollectorRegistry(auto_describe=True)

SOCKETS_CONNECTED = Gauge("microblog_sockets_connected", "Socket.IO connections open on this web process.",
                          registry=REGISTRY)
PROGRESS_EVENTS = Counter("microblog_progress_events", "task_progress events through this web process: "
                          "'in' handled by this server's message queue (its own and other processes'), 'out' relayed to "
                          "its sockets' rooms, "
                          "'suppressed' dropped as repeats of a task's end.",
                          ["direction"], registry=REGISTRY)
for _direction in ("in", "out", "suppressed"):
    PROGRESS_EVENTS.labels(_direction)  # every series exists from the start (rate() needs a zero)
