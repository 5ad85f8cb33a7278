"""Redis, the socket server, the SMTP server and the database failing under a running export."""
from __future__ import annotations

import json
import sqlite3
import time

import psycopg2

from tests.faults.conftest import HELD_POSTS, finish, running_export
from tests.harness import assert_well_ordered, new_user, wait_until


def test_redis_restart_mid_export(make_stack):
    """Pages keep working while Redis is down, launches are refused cleanly, and afterwards the
    interrupted export finishes (its work horse lived on), the subscription recovers and new exports
    push live again."""
    stack = make_stack()
    other = new_user(stack, posts=50)
    other_socket = other.socket()
    user, watcher, task_id = running_export(stack)
    try:
        stack.redis.stop()
        assert user.get(f"/api/tasks/{task_id}").json()["status"] == "started", "ended before the outage"

        assert user.get("/index").status_code == 200
        assert user.get("/tasks").status_code == 200
        before = len(other.tasks())
        page = other.post("/export_posts")  # follows the redirect to the page with the message
        assert "task queue is unavailable" in page.text
        assert len(other.tasks()) == before, "a refused launch must not leave a Task row"

        stack.redis.start()
        back_at = time.monotonic()
        end = finish(stack, watcher, task_id)
        print(f"\ninterrupted task: {end['status']} ({end['message']}) seen "
              f"{time.monotonic() - back_at:.1f} s after Redis came back")
        assert end["status"] == "finished", end  # the work horse never needed Redis: its export completes
        assert user.get(f"/api/tasks/{task_id}").json()["status"] == end["status"]
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == HELD_POSTS

        fresh = other.export()
        assert finish(stack, other_socket, fresh)["status"] == "finished"
        assert any(e["status"] == "started" for e in other_socket.of(fresh)), "live events after the outage"
        print(f"new export after the outage finished {time.monotonic() - back_at:.1f} s after Redis came back")
    finally:
        watcher.close()
        other_socket.close()


def test_socket_server_restart(make_stack):
    """Clients reconnect by themselves; a task that finished while the server was down shows finished."""
    stack = make_stack()
    user, watcher, task_id = running_export(stack)
    try:
        port = stack.ports[0]
        stack.webs[0].stop()
        wait_until(lambda: not watcher.client.connected, 10, "the client to notice the server is gone")
        # The worker finishes the export while no socket server runs (its events are lost).
        stack.release(task_id)
        stack.smtp.wait_for(user.email, timeout=120)
        restarted_at = time.monotonic()
        stack.start_web(port=port)
        end = watcher.terminal(task_id, timeout=30)
        print(f"\nsocket server restarted: finished state seen {time.monotonic() - restarted_at:.1f} s after restart")
        assert end["status"] == "finished" and end["progress"] == 100
        assert watcher.received_at[id(end)] > restarted_at, "the finished state came through the reconnection"
        # The snapshot is sent by the connect handler, so it may arrive just before the CONNECT ack.
        wait_until(lambda: watcher.client.connected, 10, "the client to be connected again")
    finally:
        watcher.close()


def test_smtp_down_keeps_the_file(make_stack):
    """With the mail server down the export still finishes, says the email failed, and downloads."""
    stack = make_stack()
    stack.smtp.stop()
    user = new_user(stack, posts=25)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = finish(stack, watcher, task_id)
        assert end["status"] == "finished"
        assert "email could not be sent" in end["message"] and "refused" in end["message"]
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == 25
        assert "email could not be sent" in user.get("/tasks").text
    finally:
        watcher.close()


def test_sqlite_locked_mid_export_is_survived(make_stack):
    """A writer holding SQLite's lock past busy_timeout stalls the export; it then completes."""
    stack = make_stack()
    user, watcher, task_id = running_export(stack)
    path = stack.database_url.removeprefix("sqlite:///")
    try:
        blocker = sqlite3.connect(path, timeout=30, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        stack.release(task_id, 50)  # the next progress write meets the lock
        try:
            # The fault lasts longer than busy_timeout (5 s): progress writes must give up meanwhile.
            wait_until(lambda: time.monotonic() - locked_at > 7, 10, "the lock to have lasted 7 s")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        end = finish(stack, watcher, task_id, timeout=120)
        assert end["status"] == "finished", end
        events = watcher.of(task_id)
        assert_well_ordered(events)
        times = [watcher.received_at[id(e)] for e in events]
        assert max(b - a for a, b in zip(times, times[1:])) > 4, "the lock never stalled the export"
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == HELD_POSTS
    finally:
        watcher.close()


def test_postgresql_connection_lost_mid_export(make_stack):
    """The worker's PostgreSQL connections are killed mid-export: it reconnects and finishes."""
    stack = make_stack(db="postgresql")
    user, watcher, task_id = running_export(stack)
    dbname = stack.database_url.rsplit("/", 1)[1]
    try:
        admin = psycopg2.connect("postgresql://postgres@127.0.0.1/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
            assert cur.fetchone()[0] >= 1
        admin.close()
        end = finish(stack, watcher, task_id, timeout=120)
        assert end["status"] in ("finished", "failed"), end
        if end["status"] == "failed":
            assert "database" in end["message"].lower()
        else:
            assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == HELD_POSTS
        print(f"\npostgresql connections killed: task {end['status']}")
    finally:
        watcher.close()


def test_job_timeout_ends_failed_took_too_long(make_stack):
    """An export running past TASK_TIMEOUT is stopped and fails with "took too long"."""
    stack = make_stack(TASK_TIMEOUT="1")
    user = new_user(stack, posts=HELD_POSTS)  # held at the gate, never released: it runs until stopped
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id, timeout=60)
        assert end["status"] == "failed" and "took too long" in end["message"], end
        assert end["progress"] < 100
        assert not any(stack.export_dir.rglob(f"{task_id}*"))
    finally:
        watcher.close()


def test_a_queued_export_whose_job_redis_lost_runs_after_all(make_stack):
    """A Redis that lost its data took the queued job with it, not the task: after the enqueue grace
    period the sweep enqueues it again, and once a worker is there the export finishes."""
    stack = make_stack(workers=0)
    user = new_user(stack, posts=5)
    watcher = user.socket()
    try:
        task_id = user.export()
        stack.redis.stop()  # no persistence: the job is gone
        stack.redis.start()
        wait_until(lambda: stack.redis.client().exists(f"rq:job:{task_id}"), 90,
                   "the web's sweep to enqueue the lost job again")
        assert user.get(f"/api/tasks/{task_id}").json()["status"] == "queued"
        stack.start_worker()
        assert finish(stack, watcher, task_id)["status"] == "finished"
        assert user.get(f"/tasks/{task_id}/download").status_code == 200
    finally:
        watcher.close()


def test_snapshot_resent_after_redis_outage(make_stack):
    """A task that ends while Redis is down reaches a connected page within 10 s of Redis returning."""
    stack = make_stack()
    user, watcher, task_id = running_export(stack)
    try:
        stack.redis.stop()
        stack.release(task_id)  # it finishes while Redis is down
        wait_until(lambda: user.get(f"/api/tasks/{task_id}").json()["status"] == "finished", 120,
                   "the export to finish while Redis is down")
        assert not [e for e in watcher.of(task_id) if e["status"] == "finished"], "event got through Redis?"
        stack.redis.start()
        back_at = time.monotonic()
        end = watcher.terminal(task_id, timeout=10)
        print(f"\nre-sync after Redis outage: finished state seen {time.monotonic() - back_at:.1f} s after Redis returned")
        assert end["status"] == "finished"
        assert watcher.client.connected
    finally:
        watcher.close()


def test_workers_count_again_after_redis_loses_its_data(make_stack):
    """A Redis restarted without persistence forgets every worker: /healthz says so at once, and
    counts each live worker again within seconds of Redis returning (never 0 for the rest of
    their lives), and the worker still runs exports."""
    import requests

    stack = make_stack(held=False)

    def workers() -> int | None:
        try:
            return requests.get(f"{stack.url}/healthz", timeout=5).json().get("workers")
        except (requests.RequestException, ValueError):
            return None

    wait_until(lambda: workers() == 1, 30, "/healthz to count the worker")
    stack.redis.stop()
    stack.redis.start()  # empty: no worker registered
    back_at = time.monotonic()
    wait_until(lambda: workers() == 1, 30, "/healthz to count the worker again")
    print(f"\nworker registered again {time.monotonic() - back_at:.1f} s after Redis returned")
    user = new_user(stack, posts=3)
    watcher = user.socket()
    try:
        assert finish(stack, watcher, user.export())["status"] == "finished"
    finally:
        watcher.close()
    assert "registered it again" in stack.workers[0].tail(200)
