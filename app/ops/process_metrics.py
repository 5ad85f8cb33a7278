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
                          "rooms with a socket on this server, "
                          "'suppressed' dropped as repeats of a task's end.",
                          ["direction"], registry=REGISTRY)
# Every series exists from the start (rate() needs a zero); the relay counts on these, not labels().
PROGRESS_IN, PROGRESS_OUT, PROGRESS_SUPPRESSED = (PROGRESS_EVENTS.labels(d) for d in ("in", "out", "suppressed"))
