"""The web process's eventlet hub (app/hub.py): a turn handles at most MAX_EVENTS ready sockets, and
a prioritized socket is handled on every turn it is ready, whatever else is.

Real epoll and real sockets (socketpairs left unread, so they stay ready turn after turn); the
hub's turns are driven by hand. A connect storm against a real server is `make bench`'s storm.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from app import hub as relay_hub


@pytest.fixture
def hub() -> Iterator[relay_hub.RelayFirstHub]:
    """A RelayFirstHub that is not running (its turns are called directly)."""
    made = relay_hub.RelayFirstHub()
    yield made
    made.priority.close()
    made.poll.close()
    relay_hub._active = None


def ready_sockets(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """Socket pairs whose first end has a byte waiting (and stays readable: nobody reads it)."""
    pairs = [socket.socketpair() for _ in range(count)]
    for _, sender in pairs:
        sender.send(b"x")
    return pairs


def test_a_storm_of_ready_sockets_is_handled_a_few_at_a_time_and_the_relay_first(hub):
    """300 ready sockets (a storm's handshakes) and the relay's subscription: every turn handles at
    most MAX_EVENTS of the storm, and the subscription on each one."""
    storm = ready_sockets(300)
    (relay, publisher), = ready_sockets(1)
    fired: list[int] = []
    try:
        for sock, _ in storm + [(relay, publisher)]:
            hub.add(hub.READ, sock.fileno(), fired.append, lambda *exc: None, lambda: None)
        relay_hub.prioritize(relay)  # what run.py has the message queue do after each subscribe
        for _ in range(4):  # the kernel's ready list alone would reach the relay on the 5th turn
            fired.clear()
            hub.wait(0)
            assert relay.fileno() in fired
            assert len(fired) <= relay_hub.MAX_EVENTS + 1
    finally:
        for a, b in storm + [(relay, publisher)]:
            a.close()
            b.close()


def test_prioritizing_the_same_socket_again_is_harmless(hub):
    """A resubscribe on the same connection registers it again: no error."""
    (relay, publisher), = ready_sockets(1)
    try:
        relay_hub.prioritize(relay)
        relay_hub.prioritize(relay)
        assert hub.priority.poll(0) == [(relay.fileno(), relay_hub._select.EPOLLIN)]
    finally:
        relay.close()
        publisher.close()


def test_prioritize_does_nothing_without_the_hub():
    """Under gevent, threads or tests (no RelayFirstHub running), prioritize is a no-op."""
    assert relay_hub._active is None
    with socket.socket() as sock:
        relay_hub.prioritize(sock)  # no error, nothing registered anywhere


def test_eventlet_can_ask_the_hub_whether_it_runs_here():
    """use_hub asks the class it is given for is_available(), and warns when it has none."""
    assert relay_hub.RelayFirstHub.is_available() is True
