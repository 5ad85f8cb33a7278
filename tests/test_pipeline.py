"""The export pipeline end to end: real web server (eventlet), real RQ worker, real Redis,
real SMTP server, python-socketio clients; on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import threading

import pytest

from config import normalize_database_url
import requests
import socketio

from tests.harness import Watcher, assert_well_ordered, new_user, read_posts, wait_until

def test_export_end_to_end(stack):
    """Events arrive in order, end once with 100; the mail carries exactly the posts; download matches."""
    user = new_user(stack, posts=1200)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id, timeout=60)
        assert end["status"] == "finished", (end, stack.logs())
        assert end["progress"] == 100
        assert end["download_url"] == f"/tasks/{task_id}/download"
        events = watcher.of(task_id)
        assert_well_ordered(events)
        assert any(e["status"] == "started" for e in events)

        expected = read_posts(stack.database_url, user.username)
        assert len(expected) == 1200
        mail = stack.smtp.wait_for(user.email)
        assert mail.message["Subject"] == "[Microblog] Your blog posts"
        content_type, data = mail.attachment("posts.json")
        assert content_type == "application/json"
        assert json.loads(data) == {"posts": expected}

        download = user.get(end["download_url"])
        assert download.status_code == 200
        assert download.headers["Content-Type"].startswith("application/json")
        assert download.content == data

        api = user.get(f"/api/tasks/{task_id}").json()
        assert {k: api[k] for k in end} == end
    finally:
        watcher.close()


def test_large_export_is_linked_not_attached(stack):
    """Over MAIL_ATTACHMENT_MAX_BYTES (100 kB here) the mail links to the download instead."""
    user = new_user(stack, posts=3000)
    watcher = user.socket()
    try:
        task_id = user.export()
        assert watcher.terminal(task_id)["status"] == "finished"
        mail = stack.smtp.wait_for(user.email)
        assert mail.attachment("posts.json") is None
        link = f"{stack.url}/tasks/{task_id}/download"
        assert link in mail.text()
        assert len(json.loads(user.get(f"/tasks/{task_id}/download").content)["posts"]) == 3000
    finally:
        watcher.close()


def test_user_without_posts_is_told_so_and_gets_no_email(stack):
    """Zero posts is not a failure: the task finishes saying so, with no file and no email."""
    user = new_user(stack)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        assert end["status"] == "finished"
        assert end["message"] == "You have no posts to export."
        assert (end["current"], end["total"], end["download_url"], end["delivery"]) == (0, 0, None, None)
        # An email would have gone out before the task ended: none went.
        assert stack.smtp.to(user.email) == []
        assert user.get(f"/tasks/{task_id}/download").status_code == 404
    finally:
        watcher.close()


def test_events_reach_only_their_owner(stack):
    """Another user's socket receives nothing of an export, even while exporting themselves."""
    alice, bob = new_user(stack, posts=300), new_user(stack, posts=10)
    alice_socket, bob_socket = alice.socket(), bob.socket()
    try:
        alice_task = alice.export()
        alice_socket.terminal(alice_task)
        # Bob's own export ends after Alice's on the same channel: had any of hers leaked, it is here by now.
        bob_task = bob.export()
        bob_socket.terminal(bob_task)
        assert {e["task_id"] for e in bob_socket.events} == {bob_task}
        assert bob_task not in {e["task_id"] for e in alice_socket.events}
    finally:
        alice_socket.close()
        bob_socket.close()


def test_foreign_task_is_404(stack):
    """Someone else's task id gets 404 on the API, the download and cancel."""
    owner, other = new_user(stack, posts=5), new_user(stack)
    watcher = owner.socket()
    try:
        task_id = owner.export()
        watcher.terminal(task_id)
    finally:
        watcher.close()
    assert owner.get(f"/api/tasks/{task_id}").status_code == 200
    assert other.get(f"/api/tasks/{task_id}").status_code == 404
    assert other.get(f"/tasks/{task_id}/download").status_code == 404
    assert other.post(f"/tasks/{task_id}/cancel", allow_redirects=False).status_code == 404
    assert requests.get(f"{stack.url}/api/tasks/{task_id}").status_code == 401


def test_anonymous_forged_and_cross_origin_sockets_are_refused(stack):
    """Only a logged-in session from the site's own origin may open a socket."""
    with pytest.raises(socketio.exceptions.ConnectionError):
        Watcher(stack.url, None, reconnection=False)
    forged = "session=eyJfdXNlcl9pZCI6IjEifQ.forged.signature"
    with pytest.raises(socketio.exceptions.ConnectionError):
        Watcher(stack.url, forged, reconnection=False)
    user = new_user(stack)
    with pytest.raises(socketio.exceptions.ConnectionError):
        Watcher(stack.url, user.cookie_header(), reconnection=False, transports=["polling"],
                headers={"Origin": "http://evil.example"})
    ok = user.socket(reconnection=False)  # the same session from its own origin is accepted
    ok.close()


def test_failed_export_ends_failed_once_with_a_reason(stack):
    """An export that cannot write its file ends `failed` with a readable message, never 100%."""
    user = new_user(stack, posts=20)
    watcher = user.socket()
    try:
        # Block this user's export folder with a plain file: writing must fail.
        stack.export_dir.mkdir(parents=True, exist_ok=True)
        blocker = stack.export_dir / str(_user_id(stack, user.username))
        blocker.write_text("not a folder")
        task_id = user.export(may_fail=True)  # it fails in milliseconds, maybe before the API is asked
        end = watcher.terminal(task_id)
        assert end["status"] == "failed"
        assert end["progress"] < 100
        assert end["message"].startswith("The export file could not be written")
        assert end["download_url"] is None
        events = watcher.of(task_id)
        assert_well_ordered(events)
        assert user.get(f"/tasks/{task_id}/download").status_code == 404
        assert stack.smtp.to(user.email) == []
    finally:
        watcher.close()


def test_mail_refused_still_finishes_with_the_file(stack):
    """If the email cannot be sent the task still finishes, says so, and the file downloads."""
    user = new_user(stack, posts=15, email=f"x{threading.get_ident()}+refuse@example.com")
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        assert end["status"] == "finished"
        assert "email could not be sent" in end["message"]
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == 15
    finally:
        watcher.close()


def test_concurrent_launches_create_one_task(stack):
    """Two simultaneous clicks on "Export your posts" create exactly one task."""
    user = new_user(stack, posts=2000)
    token = user.csrf()
    barrier = threading.Barrier(2)
    statuses = []

    def click() -> None:
        barrier.wait()
        statuses.append(user.http.post(f"{stack.url}/export_posts", data={"csrf_token": token},
                                       allow_redirects=False).status_code)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [303, 303]
    tasks = user.tasks()
    assert len(tasks) == 1
    watcher = user.socket()
    try:
        watcher.terminal(tasks[0]["task_id"])
    finally:
        watcher.close()
    # Once it has ended, exporting again is allowed.
    assert user.export() != tasks[0]["task_id"]


def test_reconnecting_socket_gets_the_current_state(stack):
    """A socket opened after the export ended receives its final state at once (the snapshot)."""
    user = new_user(stack, posts=10)
    first = user.socket()
    task_id = user.export()
    end = first.terminal(task_id)
    first.close()
    late = user.socket()
    try:
        snap = late.terminal(task_id, timeout=5)
        assert snap == end
    finally:
        late.close()


def test_logout_disconnects_that_sessions_sockets(stack):
    """Logging out over HTTP closes the sockets that session opened."""
    user = new_user(stack)
    watcher = user.socket(reconnection=False)
    assert watcher.client.connected
    r = user.post("/auth/logout", allow_redirects=False)
    assert r.status_code == 302
    wait_until(lambda: not watcher.client.connected, 10, "the socket to be closed after logout")


def _user_id(stack, username: str) -> int:
    """A user's id, from the deployment's database."""
    import sqlalchemy as sa

    engine = sa.create_engine(normalize_database_url(stack.database_url))
    try:
        with engine.connect() as conn:
            user_table = engine.dialect.identifier_preparer.quote("user")  # "user" / `user`
            return conn.execute(sa.text(f"SELECT id FROM {user_table} WHERE username = :u"),
                                {"u": username}).scalar_one()
    finally:
        engine.dispose()
