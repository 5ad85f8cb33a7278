"""Fixtures: `app`, `client`, `runner`, `auth` and factories (flaskr style), on SQLite, PostgreSQL and MySQL/MariaDB;
and `stack`, a real deployment (web server, worker, Redis, SMTP) for pipeline tests."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.harness import ROOT, RedisServer, SmtpServer, Stack, migrate, new_database_url, read_posts, seed  # noqa: F401

DATABASES = ["sqlite", "postgresql", "mysql"]
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: each test gets its own (SQLite file or PostgreSQL database)."""
    url, drop = new_database_url(request.param, tmp_path)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the fast tests (the machine's own is left alone)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def app(database_url: str, tmp_path: Path, redis_server: RedisServer):
    """An app on a fresh database, without a message queue (the test client cannot use one)."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    app = create_app(
        TESTING=True,
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=database_url,
        SOCKETIO_MESSAGE_QUEUE=None,
        REDIS_URL=redis_server.url,
        EXPORT_DIR=str(tmp_path / "exports"),
        PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",
        POSTS_PER_PAGE=5,
        RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",  # rate-limit counters of one test only
        IMPORT_RATE_LIMIT="1000 per hour",  # the import tests upload many files; the limit's test sets its own
    )
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Flask's CLI runner."""
    return app.test_cli_runner()


def csrf_token(client) -> str:
    """The CSRF token of the client's session, read from a page as a browser would."""
    page = client.get("/auth/login", follow_redirects=True)
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


class AuthActions:
    """Register, log in and out through the real forms."""

    def __init__(self, client) -> None:
        self._client = client

    def register(self, username: str = "alice", email: str | None = None, password: str = "password123",
                 password2: str | None = None):
        """POST the registration form."""
        return self._client.post("/auth/register", data={
            "username": username, "email": email or f"{username}@example.com", "password": password,
            "password2": password if password2 is None else password2, "csrf_token": csrf_token(self._client),
        })

    def login(self, username: str = "alice", password: str = "password123", remember_me: bool = False):
        """POST the login form."""
        data = {"username": username, "password": password, "csrf_token": csrf_token(self._client)}
        if remember_me:
            data["remember_me"] = "y"
        return self._client.post("/auth/login", data=data)

    def logout(self):
        """POST the logout form."""
        return self._client.post("/auth/logout", data={"csrf_token": csrf_token(self._client)})

    def post(self, url: str, data: dict | None = None, **kwargs):
        """POST any form with a valid CSRF token."""
        return self._client.post(url, data={"csrf_token": csrf_token(self._client), **(data or {})}, **kwargs)


@pytest.fixture
def auth(client) -> AuthActions:
    """Helper for the account forms."""
    return AuthActions(client)


@pytest.fixture
def make_user(app):
    """Factory: a user in the database (password 'password123')."""
    from app.extensions import db
    from app.models import User

    def make(username: str = "alice", email: str | None = None) -> User:
        with app.app_context():
            user = User(username=username, email=email or f"{username}@example.com")
            user.set_password("password123", "pbkdf2:sha256:1000")
            db.session.add(user)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


@pytest.fixture
def make_posts(app):
    """Factory: COUNT posts for a user, oldest first, via the same bulk path as `flask seed-posts`."""
    from app.cli import insert_rows
    from app.extensions import db

    def make(user_id: int, count: int) -> None:
        with app.app_context():
            insert_rows(user_id, count)
            db.session.commit()

    return make


# --- the real deployment -------------------------------------------------------------------------

@pytest.fixture(scope="module", params=DATABASES)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Private Redis, SMTP server, one web server (eventlet) and one worker, on a migrated database.

    A param "postgresql:gevent" runs the web server with SOCKETIO_ASYNC_MODE=gevent."""
    kind, _, async_mode = request.param.partition(":")
    workdir = tmp_path_factory.mktemp(f"stack-{kind}")
    url, drop = new_database_url(kind, workdir)
    migrate(url)
    redis_server = RedisServer(workdir / "redis").start()
    smtp = SmtpServer().start()
    # A test module may add to the environment (test_browser.py holds its exports: STACK_ENV).
    env = {"MAIL_ATTACHMENT_MAX_BYTES": "100000", **({"SOCKETIO_ASYNC_MODE": async_mode} if async_mode else {}),
           **getattr(request.module, "STACK_ENV", {})}
    deployment = Stack(workdir, url, redis_server, smtp, extra_env=env)
    deployment.kind = kind
    try:
        deployment.start_web()
        deployment.start_worker()
        yield deployment
    finally:
        deployment.stop()
        smtp.stop()
        redis_server.stop()
        drop()


# --- the browser (pytest-playwright), shared by tests/test_browser.py and tests/faults ------------

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, never a downloaded browser."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """No animations: Bootstrap eases the bar's width for 0.6 s, which would blur screenshots."""
    return {**browser_context_args, "reduced_motion": "reduce", "accept_downloads": True}
