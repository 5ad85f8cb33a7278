"""Task routes: launching an export, the history page, the JSON API, cancel and download.

Real parts: the test database, the session's private Redis as the RQ queue; no worker runs, so
launched jobs stay queued where the tests can see them.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis
import rq
import sqlalchemy as sa

from app.extensions import db
from app.models import Task, TaskStatus
from tests.conftest import AuthActions
from tests.factories import (
    EVENT_EXTRAS,
    EVENT_FIELDS,
    TASK_ROW_RE,
    ago,
    count,
    get_task,
    make_task,
    set_status,
    shown,
    text_of,
)

ALREADY_ACTIVE = "An export of your posts is already in progress."
QUEUE_DOWN = "The task queue is unavailable right now, so no export was started."
STARTED = "Your export has started."


class ProgressBars(HTMLParser):
    """Collects the attributes of every element with role="progressbar"."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Keep the attributes of progress bars."""
        attributes = dict(attrs)
        if attributes.get("role") == "progressbar":
            self.bars.append(attributes)


def progress_bars(page: str) -> list[dict[str, str | None]]:
    """The progress bars of a page, in document order."""
    parser = ProgressBars()
    parser.feed(page)
    return parser.bars


@pytest.fixture
def queue(app) -> Iterator[rq.Queue]:
    """The app's RQ queue on the private Redis, emptied so each test sees only its own jobs."""
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    connection.flushdb()
    yield rq.Queue(app.config["TASK_QUEUE"], connection=connection)
    connection.close()


@pytest.fixture
def alice(make_user, auth):
    """Alice, logged in."""
    user = make_user("alice")
    auth.login("alice")
    return user


@pytest.fixture
def bob(make_user):
    """Bob, another user (not logged in)."""
    return make_user("bob")


@pytest.fixture
def export_dir(app) -> Path:
    """The app's EXPORT_DIR, created."""
    folder = Path(app.config["EXPORT_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections (bound, never listening) for the whole test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --- launching an export -------------------------------------------------------------------------

def test_export_creates_one_queued_task_and_job(app, client, auth, alice, queue):
    """One click: a 303 to the profile, one queued Task row, its job waiting in Redis, a bar on every page."""
    response = auth.post("/export_posts")
    assert response.status_code == 303
    assert response.headers["Location"] == "/user/alice"
    with app.app_context():
        task = db.session.scalars(sa.select(Task)).one()
        assert (task.user_id, task.name, task.status, task.progress) == (alice.id, "export_posts",
                                                                          TaskStatus.QUEUED, 0)
        task_id = task.id
    assert queue.job_ids == [task_id]
    job = queue.fetch_job(task_id)
    # The function object from the allow-list, with the task id as its only argument.
    assert job.func_name == "app.jobs.export.export_posts"
    assert job.args == (task_id,)
    assert STARTED in text_of(client.get("/user/alice"))
    for path in ("/index", "/explore", "/user/alice"):
        bars = progress_bars(client.get(path).get_data(as_text=True))
        assert [(b["data-task-id"], b["aria-valuenow"]) for b in bars] == [(task_id, "0")], path


def test_a_launch_announces_its_row_as_inserted_without_reading_it_back(app, client, alice, queue, monkeypatch):
    """The `queued` event, the job and the log come from the row as it was inserted: no SELECT of it."""
    from app import progress
    from tests.conftest import csrf_token
    from tests.sql_watch import reads_task_rows, statements_run

    events: list[dict] = []
    monkeypatch.setattr(progress, "emit_payload", lambda payload, user_id: events.append({**payload, "to": user_id}))
    token = csrf_token(client)  # (its page lists the user's tasks)
    with app.app_context():
        engine = db.engine
    with statements_run(engine, reads_task_rows) as reads:
        assert client.post("/export_posts", data={"csrf_token": token}).status_code == 303
    assert reads == []
    task = get_task(app, queue.job_ids[0])
    [event] = events
    assert event["to"] == alice.id
    assert {k: event[k] for k in ("task_id", "status", "progress", "message", "seq", "created_at", "finished_at",
                                  "download_url", "current", "total")} == {
        "task_id": task.id, "status": "queued", "progress": 0, "message": None, "seq": 0,
        "created_at": progress.isoformat_z(task.created_at), "finished_at": None, "download_url": None,
        "current": None, "total": None}


def test_a_launch_that_ended_before_the_page_shows_how_it_ended(app, client, auth, alice, queue):
    """A task that ends before the page the launch redirects to is drawn (a bad import fails in
    milliseconds) still gets its bar there, as it ended, and no stale "has started" flash; once."""
    response = auth.post("/export_posts")
    with app.app_context():
        task_id = db.session.scalars(sa.select(Task.id)).one()
    set_status(app, task_id, TaskStatus.FAILED)
    page = client.get(response.headers["Location"])
    assert [(b["data-task-id"], b["data-status"]) for b in progress_bars(page.get_data(as_text=True))] == [
        (task_id, "failed")]
    assert STARTED not in text_of(page)
    assert progress_bars(client.get("/user/alice").get_data(as_text=True)) == []  # old news: /tasks has it


def test_second_export_while_active_refused(app, client, auth, alice, queue):
    """A second click while the first export is queued flashes a message and creates nothing."""
    auth.post("/export_posts")
    response = auth.post("/export_posts", follow_redirects=True)
    assert ALREADY_ACTIVE in text_of(response)
    assert count(app, Task) == 1
    assert len(queue.job_ids) == 1


def test_export_allowed_again_after_previous_ended(app, auth, alice, queue):
    """Once an export has ended, a new one is a new task with a new id."""
    old = make_task(app, alice.id, TaskStatus.FAILED)
    assert auth.post("/export_posts").status_code == 303
    assert count(app, Task) == 2
    assert len(queue.job_ids) == 1 and queue.job_ids[0] != old


def test_export_needs_post_and_csrf(app, client, alice, queue):
    """A GET (a link, a prefetch) is 405 and a POST without the CSRF token is 400; neither launches."""
    assert client.get("/export_posts").status_code == 405
    assert client.post("/export_posts").status_code == 400
    assert count(app, Task) == 0
    assert queue.job_ids == []


def test_export_returns_to_same_site_next_only(auth, alice, queue, subtests):
    """The button may return to the page it was on, never to another site."""
    for next_path, location in (("/tasks", "/tasks"), ("//evil.example/", "/user/alice"),
                                ("http://evil.example/", "/user/alice")):
        with subtests.test(next=next_path):
            queue.connection.flushdb()
            response = auth.post("/export_posts", {"next": next_path})
            assert response.status_code == 303
            assert response.headers["Location"] == location


def test_export_with_queue_down_leaves_no_task(app, database_url, tmp_path, make_user, closed_port):
    """With Redis unreachable, the user is told no export started, and no Task row is left behind."""
    from app import create_app

    make_user("alice")
    down = create_app(
        TESTING=True, SECRET_KEY="test", SQLALCHEMY_DATABASE_URI=database_url, SOCKETIO_MESSAGE_QUEUE=None,
        REDIS_URL=f"redis://127.0.0.1:{closed_port}/0", EXPORT_DIR=str(tmp_path / "exports"),
        PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",
    )
    try:
        auth = AuthActions(down.test_client())
        auth.login("alice")
        response = auth.post("/export_posts", follow_redirects=True)
        assert response.status_code == 200
        page = text_of(response)
        assert QUEUE_DOWN in page
        assert STARTED not in page
        assert count(app, Task) == 0
        # Not stuck either: no progress bar, and the profile still offers the export.
        assert progress_bars(response.get_data(as_text=True)) == []
        assert shown(response.get_data(as_text=True), "export-form")
    finally:
        with down.app_context():
            db.session.remove()
            db.engine.dispose()


# --- the JSON API --------------------------------------------------------------------------------

def test_api_task_returns_contract_fields(app, client, alice, export_dir):
    """The owner reads a task's state with exactly the event's fields; a finished export links its file."""
    running = make_task(app, alice.id, TaskStatus.STARTED, progress=42)
    body = client.get(f"/api/tasks/{running}").get_json()
    assert set(body) == EVENT_FIELDS | EVENT_EXTRAS
    assert body["task_id"] == running
    assert (body["name"], body["status"], body["progress"]) == ("export_posts", "started", 42)
    assert body["message"] is None and body["download_url"] is None

    path = export_dir / "done.json"
    path.write_text('{"posts": []}')
    done = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, result_path=str(path))
    body = client.get(f"/api/tasks/{done}").get_json()
    assert (body["status"], body["progress"]) == ("finished", 100)
    assert body["download_url"] == f"/tasks/{done}/download"
    assert body["finished_at"].endswith("Z")


def test_api_task_of_another_user_404(app, client, alice, bob):
    """Another user's task is a JSON 404, exactly like an unknown id (its existence is not confirmed)."""
    task_id = make_task(app, bob.id, TaskStatus.STARTED)
    for path in (f"/api/tasks/{task_id}", "/api/tasks/no-such-task"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.is_json
        assert task_id not in response.get_data(as_text=True)


def test_unknown_task_ids_404_everywhere(client, auth, alice, subtests):
    """Any id that is not one of the user's tasks is a 404 on every task route, however odd its spelling."""
    for task_id in ("no-such-task", "0" * 32, "x" * 100, "%00", "%E2%80%AE"):
        with subtests.test(task_id=task_id):
            assert client.get(f"/api/tasks/{task_id}").status_code == 404
            assert client.get(f"/tasks/{task_id}/download").status_code == 404
            assert auth.post(f"/tasks/{task_id}/cancel").status_code == 404


def test_api_tasks_lists_own_newest_first(app, client, alice, bob):
    """The list API returns only the caller's tasks, newest first."""
    old = make_task(app, alice.id, TaskStatus.FINISHED, age=ago(hours=2))
    new = make_task(app, alice.id, TaskStatus.QUEUED)
    make_task(app, bob.id, TaskStatus.QUEUED)
    tasks = client.get("/api/tasks").get_json()["tasks"]
    assert [t["task_id"] for t in tasks] == [new, old]


# --- the history page ----------------------------------------------------------------------------

def test_history_newest_first_with_progressbars(app, client, alice, bob, export_dir):
    """/tasks lists the user's tasks newest first, each with an accessible bar at its percent."""
    assert "No tasks yet." in text_of(client.get("/tasks"))
    path = export_dir / "done.json"
    path.write_text('{"posts": []}')
    oldest = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, age=ago(hours=3), result_path=str(path))
    middle = make_task(app, alice.id, TaskStatus.FAILED, progress=37, age=ago(hours=2),
                       message="The mail server is down.")
    newest = make_task(app, alice.id, TaskStatus.STARTED, progress=12, age=ago(minutes=1))
    foreign = make_task(app, bob.id, TaskStatus.STARTED)
    response = client.get("/tasks")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert TASK_ROW_RE.findall(page) == [newest, middle, oldest]
    assert foreign not in page
    bars = {b["data-task-id"]: b["aria-valuenow"] for b in progress_bars(page)}
    assert bars == {newest: "12", middle: "37", oldest: "100"}
    assert "Failed: The mail server is down." in text_of(response)
    assert f'href="/tasks/{oldest}/download"' in page


# --- cancel --------------------------------------------------------------------------------------

def test_cancel_queued_task(app, client, auth, alice, queue):
    """Canceling a queued export: 303 to the history, row canceled, job off the queue; a new export may start."""
    auth.post("/export_posts")
    task_id = queue.job_ids[0]
    response = auth.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 303
    assert response.headers["Location"] == "/tasks"
    task = get_task(app, task_id)
    assert task.status == TaskStatus.CANCELED and task.finished_at is not None
    assert task_id not in queue.job_ids
    assert "The task was canceled." in text_of(client.get("/tasks"))
    assert auth.post("/export_posts").status_code == 303
    assert count(app, Task, status=TaskStatus.QUEUED) == 1


def test_cancel_running_task(app, auth, alice, queue):
    """A running task (its job already taken by a worker) is canceled too."""
    task_id = make_task(app, alice.id, TaskStatus.STARTED, progress=20)
    assert auth.post(f"/tasks/{task_id}/cancel").status_code == 303
    assert get_task(app, task_id).status == TaskStatus.CANCELED


def test_cancel_too_late_409(app, auth, alice, queue, subtests):
    """A task that has ended, or whose result is being emailed, cannot be canceled: 409, row unchanged."""
    cases = [(TaskStatus.FINISHED, False), (TaskStatus.FAILED, False), (TaskStatus.CANCELED, False),
             (TaskStatus.STARTED, True)]
    for status, delivering in cases:
        with subtests.test(status=status.value, delivering=delivering):
            task_id = make_task(app, alice.id, status, progress=95, delivering=delivering)
            response = auth.post(f"/tasks/{task_id}/cancel")
            assert response.status_code == 409
            assert "cannot be canceled" in text_of(response)
            assert get_task(app, task_id).status == status


def test_cancel_another_users_task_404(app, auth, alice, bob, queue):
    """Alice cannot cancel Bob's task: 404 like an unknown id, and Bob's task carries on."""
    task_id = make_task(app, bob.id, TaskStatus.QUEUED)
    assert auth.post(f"/tasks/{task_id}/cancel").status_code == 404
    assert get_task(app, task_id).status == TaskStatus.QUEUED


def test_cancel_needs_post_and_csrf(app, client, alice, queue):
    """A cancel without the CSRF token is a 400, a GET is a 405; the task carries on."""
    task_id = make_task(app, alice.id, TaskStatus.QUEUED)
    assert client.post(f"/tasks/{task_id}/cancel").status_code == 400
    assert client.get(f"/tasks/{task_id}/cancel").status_code == 405
    assert get_task(app, task_id).status == TaskStatus.QUEUED


# --- download ------------------------------------------------------------------------------------

def test_download_finished_export(app, client, alice, export_dir):
    """The owner downloads a finished export, byte for byte, named after the user and the day it finished."""
    content = json.dumps({"posts": [{"body": "hello", "timestamp": "2024-01-02T03:04:05.000006Z"}]})
    path = export_dir / str(alice.id) / "export.json"
    path.parent.mkdir()
    path.write_text(content)
    task_id = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, result_path=str(path))
    response = client.get(f"/tasks/{task_id}/download")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    disposition = response.headers["Content-Disposition"]
    day = get_task(app, task_id).finished_at.strftime("%Y-%m-%d")
    assert disposition == f"attachment; filename=microblog-alice-posts-{day}.json"
    assert response.get_data(as_text=True) == content


def test_download_refused_unless_own_finished_export(app, client, alice, bob, export_dir, subtests):
    """Unfinished tasks (even with a file lying around) and Bob's finished export are 404."""
    path = export_dir / "some.json"
    path.write_text('{"posts": []}')
    task_id = make_task(app, alice.id, TaskStatus.QUEUED, result_path=str(path))
    for status in (TaskStatus.QUEUED, TaskStatus.STARTED, TaskStatus.FAILED, TaskStatus.CANCELED):
        with subtests.test(status=status.value):
            set_status(app, task_id, status)
            assert client.get(f"/tasks/{task_id}/download").status_code == 404
    with subtests.test("another user's finished export"):
        task_id = make_task(app, bob.id, TaskStatus.FINISHED, progress=100, result_path=str(path))
        assert client.get(f"/tasks/{task_id}/download").status_code == 404


def test_download_only_serves_files_inside_export_dir(app, client, alice, export_dir, tmp_path, subtests):
    """A result_path outside EXPORT_DIR (or gone) is never served, however it is spelled."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": true}')
    sibling = Path(str(export_dir) + "-evil") / "x.json"
    sibling.parent.mkdir()
    sibling.write_text('{"secret": true}')
    link = export_dir / "link.json"
    link.symlink_to(secret)
    cases = {
        "outside": str(secret),
        "traversal": str(export_dir / ".." / "secret.json"),
        "sibling": str(sibling),
        "symlink": str(link),
        "missing": str(export_dir / "gone.json"),
        "the folder itself": str(export_dir),
    }
    for where, result_path in cases.items():
        with subtests.test(where):
            task_id = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, result_path=result_path)
            response = client.get(f"/tasks/{task_id}/download")
            assert response.status_code == 404
            assert "secret" not in response.get_data(as_text=True)
