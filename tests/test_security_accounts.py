"""The account lifecycle: password reset by email (expiry, single use, same answer), deletion (no
row, no file left), and usernames/emails unique regardless of case."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer

from app.auth.lifecycle import RESET_SALT, SAME_ANSWER, reset_token
from app.extensions import db, mail
from app.models import Post, Task, TaskStatus, User, UserSession
from tests.conftest import AuthActions
from tests.factories import count, make_task, text_of


def token_for(app, username: str) -> str:
    """The token a reset email to this user would carry."""
    with app.app_context():
        return reset_token(db.session.scalar(sa.select(User).where(User.username == username)))


def new_password(client, token: str, password: str = "brand-new-pass"):
    """Submit the reset form of a link."""
    return AuthActions(client).post(f"/auth/reset_password/{token}", {"password": password, "password2": password})


def test_reset_request_same_answer_and_mails_the_link(app, make_user):
    """Known and unknown addresses get the same page; only the known one gets a mail, with a working link."""
    make_user("alice")
    with mail.record_messages() as outbox:
        answers = []
        for email in ("ALICE@example.com", "nobody@example.com"):
            client = app.test_client()
            response = AuthActions(client).post("/auth/reset_password_request", {"email": email})
            answers.append((response.status_code, response.headers["Location"], SAME_ANSWER in text_of(
                client.get(response.headers["Location"]))))
        assert answers[0] == answers[1] == (302, "/auth/login", True)
        deadline = time.monotonic() + 10
        while not outbox and time.monotonic() < deadline:  # sent off the request, in the background
            time.sleep(0.05)
        assert [m.recipients for m in outbox] == [["alice@example.com"]]
        link = [w for w in outbox[0].body.split() if "/auth/reset_password/" in w][0]
    assert link.startswith(app.config["PUBLIC_URL"] + "/auth/reset_password/")
    client = app.test_client()
    assert new_password(client, link.rsplit("/", 1)[1]).status_code == 302
    assert AuthActions(app.test_client()).login("alice", "brand-new-pass").status_code == 302


def test_reset_token_works_once_and_ends_every_session(app, make_user):
    """A reset logs out every browser; the same link then refuses a second use."""
    make_user("alice")
    browser = app.test_client()
    AuthActions(browser).login()
    token = token_for(app, "alice")
    assert new_password(app.test_client(), token).status_code == 302
    assert browser.get("/index").status_code == 302
    assert count(app, UserSession) == 0
    again = new_password(app.test_client(), token, "another-password")
    assert again.status_code == 400 and "invalid, expired or already used" in text_of(again)
    assert AuthActions(app.test_client()).login("alice", "brand-new-pass").status_code == 302


def test_reset_token_expires_after_an_hour(app, make_user, monkeypatch):
    """A link older than one hour is refused; a forged or altered one too."""
    make_user("alice")
    token = token_for(app, "alice")
    real_time = time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real_time() + 3601)
    assert new_password(app.test_client(), token).status_code == 400
    monkeypatch.setattr("itsdangerous.timed.time.time", real_time)
    forged = URLSafeTimedSerializer("not-the-key", salt=RESET_SALT).dumps({"user": 1, "pw": "x"})
    assert new_password(app.test_client(), forged).status_code == 400
    assert new_password(app.test_client(), token[:-2] + "xx").status_code == 400
    assert new_password(app.test_client(), token).status_code == 302


def test_delete_account_leaves_no_row_and_no_file(app, make_user, make_posts, tmp_path):
    """With the password: the user, posts, tasks, sessions and export files are gone; others are untouched."""
    alice = make_user("alice")
    bob = make_user("bob")
    make_posts(alice.id, 7)
    make_posts(bob.id, 2)
    task_id = make_task(app, alice.id, TaskStatus.FINISHED)
    export = tmp_path / "exports" / str(alice.id) / f"{task_id}.json"
    export.parent.mkdir(parents=True)
    export.write_text('{"posts": []}')
    browser = app.test_client()
    auth = AuthActions(browser)
    auth.login()
    other_browser = app.test_client()
    AuthActions(other_browser).login()
    assert auth.post("/auth/delete_account", {"password": "wrong-password"}).status_code == 403
    assert count(app, User) == 2
    response = auth.post("/auth/delete_account", {"password": "password123"})
    assert response.status_code == 303
    assert count(app, User) == 1 and count(app, Post) == 2 and count(app, Task) == 0
    assert count(app, UserSession) == 0
    assert not export.exists() and not export.parent.exists()
    assert other_browser.get("/index").status_code == 302
    assert AuthActions(app.test_client()).login("alice").status_code == 401


def test_delete_account_waits_for_a_running_task(app, make_user):
    """A queued or running export must end first: its job would write a file after the deletion."""
    alice = make_user("alice")
    make_task(app, alice.id, TaskStatus.STARTED)
    auth = AuthActions(app.test_client())
    auth.login()
    assert auth.post("/auth/delete_account", {"password": "password123"}).status_code == 409
    assert count(app, User) == 1


def test_usernames_and_emails_unique_regardless_of_case(app, make_user, auth):
    """'Alice' beside 'alice' is refused by the form and by the database itself; login ignores case."""
    make_user("alice")
    assert auth.register("ALICE", email="other@example.com").status_code == 400
    assert auth.register("alicia", email="Alice@Example.COM").status_code == 400
    assert count(app, User) == 1
    with app.app_context():
        for row in ({"username": "ALICE", "email": "x@example.com"}, {"username": "bobby", "email": "ALICE@example.com"}):
            db.session.add(User(**row))
            with pytest.raises(sa.exc.IntegrityError):
                db.session.commit()
            db.session.rollback()
    assert auth.login("Alice").status_code == 302


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_refuses_existing_case_duplicates(kind, tmp_path, redis_server, capfd):
    """An old database with 'Alice' and 'alice' stops the upgrade with a message naming them."""
    from flask_migrate import upgrade

    from app import create_app
    from tests.harness import ROOT, new_database_url

    url, drop = new_database_url(kind, tmp_path)
    try:
        app = create_app(TESTING=True, SECRET_KEY="t", SQLALCHEMY_DATABASE_URI=url, SOCKETIO_MESSAGE_QUEUE=None,
                         REDIS_URL=redis_server.url)
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"), revision="a25b1ee9524e")
            with db.engine.begin() as connection:
                connection.execute(sa.text('INSERT INTO "user" (username, email) VALUES '
                                           "('Alice', 'a1@example.com'), ('alice', 'a2@example.com')"))
            with pytest.raises(SystemExit):  # what `flask db upgrade` does with the migration's error
                upgrade(directory=str(ROOT / "migrations"))
            assert "these differ only in case: 'alice' (2 accounts)" in capfd.readouterr().err
            # Once the operator renamed one, the same upgrade goes through.
            with db.engine.begin() as connection:
                connection.execute(sa.text("UPDATE \"user\" SET username = 'alice2' WHERE username = 'alice'"))
            upgrade(directory=str(ROOT / "migrations"))
            db.session.remove()
            db.engine.dispose()
    finally:
        drop()
