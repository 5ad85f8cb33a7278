"""Where the socket server relays progress (app/sockets.py): who may connect, what they receive.

Flask-SocketIO's test client drives the real handlers (the test app has no message queue).
"""
from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from flask_socketio.test_client import SocketIOTestClient

from app.extensions import db
from app.models import Task, TaskStatus, UserSession
from app.progress import publish
from tests.conftest import AuthActions
from tests.factories import EVENT_EXTRAS, EVENT_FIELDS, ago, make_task


def socket_client(app: Flask, flask_client: FlaskClient | None = None) -> SocketIOTestClient:
    """A Socket.IO test client carrying the cookies of a Flask test client (if any)."""
    return app.extensions["socketio"].test_client(app, flask_test_client=flask_client)


def progress_events(sio: SocketIOTestClient) -> list[dict[str, Any]]:
    """The `task_progress` payloads received since the last call; fails on any other event."""
    received = sio.get_received()
    assert {r["name"] for r in received} <= {"task_progress"}, received
    return [r["args"][0] for r in received]


def logged_in(app: Flask, username: str) -> tuple[FlaskClient, AuthActions]:
    """A fresh Flask test client logged in as `username`, and its auth helper."""
    client = app.test_client()
    auth = AuthActions(client)
    assert auth.login(username).status_code == 302
    return client, auth


@pytest.fixture
def alice(make_user):
    """Alice (password 'password123')."""
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    """Bob (password 'password123')."""
    return make_user("bob")


def test_connection_without_login_refused(app, client, alice, subtests):
    """No socket without a logged-in session: none at all, a made-up cookie, or a logged-out browser."""
    with subtests.test("no cookie"):
        assert not socket_client(app).is_connected()
    with subtests.test("anonymous session"):
        assert not socket_client(app, client).is_connected()
    with subtests.test("session cookie signed with another key"):
        forger = Flask("forger")
        forger.secret_key = "not-the-app-key"
        cookie = SecureCookieSessionInterface().get_signing_serializer(forger).dumps(
            {"_user_id": str(alice.id), "_fresh": True})
        forged = app.test_client()
        forged.set_cookie("session", cookie)
        assert forged.get("/index").status_code == 302  # the pages refuse it too
        assert not socket_client(app, forged).is_connected()
    with subtests.test("logged out"):
        browser, auth = logged_in(app, "alice")
        auth.logout()
        assert not socket_client(app, browser).is_connected()


def test_logged_in_connection_accepted(app, alice):
    """A logged-in user's socket is accepted and nothing is sent while there are no tasks."""
    client, _ = logged_in(app, "alice")
    sio = socket_client(app, client)
    assert sio.is_connected()
    assert progress_events(sio) == []


def test_connect_sends_snapshot_of_own_recent_tasks(app, alice, bob):
    """On connect: one event per active or recently ended task of the user; not old ones, not Bob's."""
    running = make_task(app, alice.id, TaskStatus.STARTED, progress=63, age=ago(minutes=1))
    ended_recently = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, age=ago(minutes=20),
                               ended_ago=ago(minutes=9))
    failed_recently = make_task(app, alice.id, TaskStatus.FAILED, progress=40, age=ago(minutes=5),
                                ended_ago=ago(minutes=4), message="The mail server is down.")
    make_task(app, alice.id, TaskStatus.FINISHED, progress=100, age=ago(minutes=30), ended_ago=ago(minutes=11))
    make_task(app, alice.id, TaskStatus.CANCELED, age=ago(days=2), ended_ago=ago(days=2))
    make_task(app, bob.id, TaskStatus.STARTED)
    make_task(app, bob.id, TaskStatus.FINISHED, progress=100)

    client, _ = logged_in(app, "alice")
    sio = socket_client(app, client)
    assert sio.is_connected()
    events = progress_events(sio)
    by_id = {e["task_id"]: e for e in events}
    assert len(events) == len(by_id) == 3, "exactly one snapshot per task"
    assert set(by_id) == {running, ended_recently, failed_recently}
    # A page that connects mid-export shows the current percent at once.
    assert (by_id[running]["status"], by_id[running]["progress"]) == ("started", 63)
    assert (by_id[ended_recently]["status"], by_id[ended_recently]["progress"]) == ("finished", 100)
    assert by_id[failed_recently]["message"] == "The mail server is down."
    for event in events:
        assert set(event) == EVENT_FIELDS | EVENT_EXTRAS


def test_each_user_gets_only_their_own_snapshot(app, alice, bob):
    """Two users connected at once each receive their own tasks' snapshot."""
    alice_task = make_task(app, alice.id, TaskStatus.STARTED)
    bob_task = make_task(app, bob.id, TaskStatus.QUEUED)
    alice_sio = socket_client(app, logged_in(app, "alice")[0])
    bob_sio = socket_client(app, logged_in(app, "bob")[0])
    assert [e["task_id"] for e in progress_events(alice_sio)] == [alice_task]
    assert [e["task_id"] for e in progress_events(bob_sio)] == [bob_task]


def test_published_progress_reaches_only_its_owner(app, alice, bob):
    """Live events go to the owner's sockets (every tab) and never to another user's."""
    alice_task = make_task(app, alice.id, TaskStatus.STARTED, progress=10)
    bob_task = make_task(app, bob.id, TaskStatus.STARTED, progress=20)
    alice_client, _ = logged_in(app, "alice")
    alice_tabs = [socket_client(app, alice_client), socket_client(app, alice_client)]
    bob_sio = socket_client(app, logged_in(app, "bob")[0])
    for sio in (*alice_tabs, bob_sio):
        progress_events(sio)  # drop the connect snapshots

    with app.app_context():
        publish(db.session.get(Task, alice_task))
        publish(db.session.get(Task, bob_task))
    for tab in alice_tabs:
        assert [e["task_id"] for e in progress_events(tab)] == [alice_task]
    assert [e["task_id"] for e in progress_events(bob_sio)] == [bob_task]


def test_logout_disconnects_that_sessions_sockets(app, alice):
    """Logging out closes the sockets this browser session opened, not another session's."""
    this_client, this_auth = logged_in(app, "alice")
    other_client, _ = logged_in(app, "alice")
    this_sio = socket_client(app, this_client)
    other_sio = socket_client(app, other_client)
    assert this_sio.is_connected() and other_sio.is_connected()
    this_auth.logout()
    assert not this_sio.is_connected()
    assert other_sio.is_connected()


def test_logout_disconnects_sockets_of_remembered_session(app, alice):
    """A browser signed in by its "remember me" cookie also has its sockets closed on logout."""
    first = app.test_client()
    AuthActions(first).login("alice", remember_me=True)
    token = first.get_cookie("remember_token").value
    # The browser was closed and reopened: only the remember cookie came back.
    browser = app.test_client()
    browser.set_cookie("remember_token", token)
    assert browser.get("/index").status_code == 200
    sio = socket_client(app, browser)
    assert sio.is_connected()
    assert AuthActions(browser).logout().status_code == 302
    assert not sio.is_connected()


def test_cross_origin_socket_refused(app, alice, subtests):
    """Another site's page cannot open a socket with the user's cookie; the app's own pages can."""
    browser, _ = logged_in(app, "alice")
    for origin, status in (("http://localhost", 200), ("http://evil.example", 400), ("null", 400),
                           ("http://localhost.evil.example", 400)):
        with subtests.test(origin=origin):
            response = browser.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": origin})
            assert response.status_code == status


def test_socket_events_leave_no_routing_exception(app, client):
    """Flask-SocketIO runs every socket event in a request context for the Socket.IO path: that path has
    a rule, so no NotFound (and its traceback, a reference cycle per event) is made, whether the
    connection began as a poll or a WebSocket upgrade; HTTP on that path still reaches Engine.IO."""
    from flask import request

    upgrade = {"HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade"}
    for environ in ({}, upgrade):
        with app.test_request_context("/socket.io/", query_string="EIO=4&transport=websocket",
                                      environ_base=environ):
            assert request.routing_exception is None
    response = client.get("/socket.io/?EIO=4&transport=polling")
    assert response.status_code == 200 and response.get_data(as_text=True).startswith("0{")


def test_closed_socket_stops_counting(app, alice):
    """Closing a socket takes it off the connected-sockets gauge and its user's count (batched)."""
    from app.ops.process_metrics import SOCKETS_CONNECTED
    from app.socket_limits import user_sockets_key
    from tests.harness import wait_until

    client, _ = logged_in(app, "alice")
    before = SOCKETS_CONNECTED._value.get()
    sio = socket_client(app, client)
    assert sio.is_connected() and SOCKETS_CONNECTED._value.get() == before + 1
    redis = app.extensions["redis"]
    with app.app_context():
        key = user_sockets_key(alice.id)
    assert redis.zcard(key) == 1
    sio.disconnect()
    assert SOCKETS_CONNECTED._value.get() == before
    wait_until(lambda: redis.zcard(key) == 0, 5, "the closed socket leaving its user's count")


def test_a_connect_that_fails_after_counting_undoes_its_count(app, alice, monkeypatch):
    """A connect that fails once its socket is counted (here the snapshot's database read) is refused
    and leaves nothing behind: not in the user's count, not on the gauge, not in the refresher's map."""
    from app import socket_limits, sockets
    from app.ops.process_metrics import SOCKETS_CONNECTED
    from tests.harness import wait_until

    def broken(user_id: int) -> list:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(sockets, "snapshot", broken)
    client, _ = logged_in(app, "alice")
    before = SOCKETS_CONNECTED._value.get()
    with pytest.raises(RuntimeError):  # the test client re-raises what the server would log
        socket_client(app, client)
    redis = app.extensions["redis"]
    with app.app_context():
        key = socket_limits.user_sockets_key(alice.id)
    wait_until(lambda: redis.zcard(key) == 0, 5, "the failed socket leaving its user's count")
    with app.app_context():
        (session_id,) = db.session.scalars(sa.select(UserSession.id).where(UserSession.user_id == alice.id))
    wait_until(lambda: redis.scard(sockets.session_sockets_key(session_id)) == 0, 5,
               "the failed socket leaving the set its login's logout closes")
    assert SOCKETS_CONNECTED._value.get() == before
    assert not [sid for sid, (_, removals) in socket_limits.open_sockets.items() if removals[0][1] == key]
