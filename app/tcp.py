"""TCP options the app sets on its own connections."""
from __future__ import annotations

import socket


def send_at_once(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm (TCP_NODELAY) on a TCP connection; other sockets are left as they are.

    Nagle's algorithm holds a small write while an earlier one is unacknowledged, and a peer waiting
    for more delays its ACK by up to 40 ms (Linux). The app's connections write whole messages, so
    holding one back only delays it: the web server's frames after a PING (app/admission.py) and the
    end of a streamed email's DATA (app/mail_stream.py) each waited that long.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
