"""Rate limits: failed logins per account and per address, exports per user, registrations per
address, and what they do while Redis is down. Short test limits stand in for the real windows."""
from __future__ import annotations

import time

import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import Task, TaskStatus
from tests.conftest import AuthActions
from tests.factories import set_status, text_of
from tests.harness import free_port


def fail_logins(app, username: str, times: int) -> list[int]:
    """Status codes of `times` wrong-password attempts, each from a new browser."""
    return [AuthActions(app.test_client()).login(username, "wrong-password").status_code for _ in range(times)]


def test_failed_logins_per_account(app, make_user):
    """After LOGIN_RATE_LIMIT failures the account answers 429, even to the right password, until
    the window has passed; other accounts are not affected; success never counts."""
    make_user("alice")
    make_user("bob")
    app.config["LOGIN_RATE_LIMIT"] = "3 per 2 seconds"
    for _ in range(5):  # successful logins never count
        assert AuthActions(app.test_client()).login("alice").status_code == 302
    started = time.monotonic()
    assert fail_logins(app, "alice", 3) == [401, 401, 401]
    refused = AuthActions(app.test_client()).login("ALICE", "password123")  # however the name is cased
    assert refused.status_code == 429
    assert "Too many failed sign-in attempts for this account" in text_of(refused)
    assert refused.headers.get("Retry-After")
    assert AuthActions(app.test_client()).login("bob").status_code == 302
    # The window (2 s here, 15 minutes by default) passes: the right password works again.
    time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    assert AuthActions(app.test_client()).login("alice").status_code == 302


def test_failed_logins_per_address(app, make_user):
    """Many accounts tried from one address: LOGIN_ADDRESS_RATE_LIMIT failures, then 429 for all."""
    make_user("alice")
    app.config["LOGIN_ADDRESS_RATE_LIMIT"] = "4 per 15 minutes"
    codes = [AuthActions(app.test_client()).login(f"user{i}", "wrong-password").status_code for i in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    response = AuthActions(app.test_client()).login("alice")
    assert response.status_code == 429 and "from your network address" in text_of(response)
    other = app.test_client()
    assert AuthActions(other).login("alice").status_code == 429


def test_exports_per_user(app, make_user):
    """EXPORT_RATE_LIMIT exports launched in the window, then 429 with a message; refusals do not count."""
    alice = make_user("alice")
    app.config["EXPORT_RATE_LIMIT"] = "3 per hour"
    client = app.test_client()
    auth = AuthActions(client)
    auth.login()
    for i in range(3):
        assert auth.post("/export_posts").status_code == 303
        if i < 2:  # a second click while one runs is refused by the app, and not counted by the limit
            assert "already in progress" in text_of(auth.post("/export_posts", follow_redirects=True))
        with app.app_context():
            task_id = db.session.scalar(sa.select(Task.id).where(Task.user_id == alice.id,
                                                                 Task.status == TaskStatus.QUEUED))
        set_status(app, task_id, TaskStatus.FINISHED)
    refused = auth.post("/export_posts")
    assert refused.status_code == 429
    assert "most exports allowed in an hour" in text_of(refused)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 3


def test_registrations_per_address(app):
    """REGISTER_RATE_LIMIT registration attempts from one address, then 429."""
    app.config["REGISTER_RATE_LIMIT"] = "2 per hour"
    codes = [AuthActions(app.test_client()).register(f"user{i}").status_code for i in range(3)]
    assert codes == [302, 302, 429]
    assert "Too many registrations" in text_of(AuthActions(app.test_client()).register("user9"))


def test_limits_hold_while_redis_is_down(database_url, tmp_path, make_user):
    """With Redis unreachable each process counts in memory: logins are still limited, pages still load."""
    make_user("alice")
    app = create_app(TESTING=True, SECRET_KEY="test", SQLALCHEMY_DATABASE_URI=database_url,
                     SOCKETIO_MESSAGE_QUEUE=None, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                     EXPORT_DIR=str(tmp_path / "exports"), PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",
                     LOGIN_RATE_LIMIT="3 per 15 minutes")
    client = app.test_client()
    assert AuthActions(client).login().status_code == 302
    assert client.get("/index").status_code == 200
    assert fail_logins(app, "alice", 4) == [401, 401, 401, 429]
    assert AuthActions(app.test_client()).login("alice").status_code == 429
    assert client.get("/index").status_code == 200


def test_imports_per_user(app, make_user):
    """IMPORT_RATE_LIMIT imports launched in the window, then 429 with a message and no new task."""
    import io

    alice = make_user("alice")
    app.config["IMPORT_RATE_LIMIT"] = "2 per hour"
    auth = AuthActions(app.test_client())
    auth.login()
    body = b'{"posts": [{"body": "hello", "timestamp": "2025-01-01T00:00:00Z"}]}'

    def upload():
        return auth.post("/import_posts", data={"file": (io.BytesIO(body), "posts.json")},
                         content_type="multipart/form-data")

    for _ in range(2):
        assert upload().status_code == 303
        with app.app_context():
            task_id = db.session.scalar(sa.select(Task.id).where(Task.user_id == alice.id,
                                                                 Task.status == TaskStatus.QUEUED))
        set_status(app, task_id, TaskStatus.FINISHED)
    refused = upload()
    assert refused.status_code == 429
    assert "most imports allowed in an hour" in text_of(refused)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 2
    assert auth._client.get("/import_posts").status_code == 200  # the form itself is never limited
