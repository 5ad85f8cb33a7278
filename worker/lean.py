"""What the worker leaves out: the client libraries python-socketio imports and the worker never uses.

`import socketio` imports its clients, and engine.io's client imports requests (with urllib3,
charset_normalizer, idna, certifi) and websocket-client, whether or not a client is ever made. The
worker only publishes through the Redis manager. Every work horse is a fork of the worker and its
RSS counts the pages they share: these libraries were 5.2 MB of it (the worker's app with its
emitter, 75.3 -> 70.1 MB resident). engine.io's client already treats both as optional
(`except ImportError`), so leaving them out changes nothing else.
"""
from __future__ import annotations

import sys

UNUSED = ("requests", "websocket")


def leave_out_unused_clients() -> None:
    """Make this process's `import requests` and `import websocket` fail; call before anything imports socketio."""
    for name in UNUSED:
        if name not in sys.modules:
            sys.modules[name] = None  # the import system's own way to say "not here"
