"""Configuration from the environment: defaults, database URLs, integers, and the development SECRET_KEY."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
from flask import Flask

from app import _instance_secret_key, create_app
from config import Config, normalize_database_url

ENV_VARS = (
    "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "TASK_QUEUE", "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
    "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_TIMEOUT", "ADMINS", "PORT", "EXPORT_DIR", "MAIL_ATTACHMENT_MAX_BYTES",
    "PUBLIC_URL", "POSTS_PER_PAGE", "TASK_TIMEOUT", "SWEEP_INTERVAL", "JOB_MONITORING_INTERVAL",
    "SOCKETIO_ASYNC_MODE", "SOCKETIO_ORIGINS", "PASSWORD_HASH_METHOD",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Start every test from an environment that sets none of our variables."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def instance_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every app created in this test at a private instance folder (not the checkout's)."""
    folder = tmp_path / "instance"
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(folder))
    return folder


def build_app(tmp_path: Path, **overrides: object) -> Flask:
    """An app on a throwaway SQLite file, without a message queue (nothing connects)."""
    options = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'config.db'}", "SOCKETIO_MESSAGE_QUEUE": None}
    return create_app(**{**options, **overrides})


def test_secret_key_generated_once_and_persisted(clean_env, instance_dir, tmp_path):
    """Without SECRET_KEY, the first start makes one and keeps it; the next start reuses it."""
    first = build_app(tmp_path)
    second = build_app(tmp_path)
    key = first.config["SECRET_KEY"]
    assert key and len(key) >= 32
    assert second.config["SECRET_KEY"] == key
    key_file = instance_dir / "secret_key"
    assert key_file.read_text().strip() == key
    # Only the owner may read it: it signs every session.
    assert stat.S_IMODE(key_file.stat().st_mode) & 0o077 == 0


def test_secret_key_not_a_constant(clean_env, monkeypatch, tmp_path):
    """Two deployments (two instance folders) get two different keys."""
    keys = []
    for name in ("one", "two"):
        monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self, n=name: str(tmp_path / n))
        keys.append(build_app(tmp_path).config["SECRET_KEY"])
    assert keys[0] != keys[1]


def test_sessions_survive_a_restart(clean_env, instance_dir, tmp_path):
    """A session cookie signed by one process is accepted by the next one on the same instance folder."""
    first = build_app(tmp_path).test_client()
    with first.session_transaction() as session:
        session["marker"] = "kept"
    cookie = first.get_cookie("session")
    second = build_app(tmp_path).test_client()
    second.set_cookie("session", cookie.value)
    with second.session_transaction() as session:
        assert session.get("marker") == "kept"


def test_secret_key_from_environment_wins(clean_env, instance_dir, tmp_path):
    """SECRET_KEY from the environment is used as is, and no key file is written."""
    clean_env.setenv("SECRET_KEY", "from-the-environment")
    assert build_app(tmp_path).config["SECRET_KEY"] == "from-the-environment"
    assert not (instance_dir / "secret_key").exists()


def test_instance_secret_key_reads_existing_file(tmp_path):
    """A key already in the instance folder is read back (surrounding whitespace ignored)."""
    (tmp_path / "secret_key").write_text("abc123\n")
    assert _instance_secret_key(str(tmp_path)) == "abc123"


def test_instance_secret_key_creates_then_reuses(tmp_path):
    """The helper makes a hex key once, stores it, and returns the same key afterwards."""
    key = _instance_secret_key(str(tmp_path))
    assert len(key) == 64 and int(key, 16) >= 0
    assert _instance_secret_key(str(tmp_path)) == key
    assert (tmp_path / "secret_key").read_text() == key


def test_empty_key_file_never_becomes_the_key(tmp_path):
    """An empty key file (a start killed mid-write, a stray `touch`) must not give an empty SECRET_KEY.

    With an empty key Flask has no sessions and every page fails; either a real key or a clear error will do.
    """
    (tmp_path / "secret_key").write_text("")
    try:
        key = _instance_secret_key(str(tmp_path))
    except (RuntimeError, ValueError) as error:
        assert "secret_key" in str(error)
    else:
        assert len(key) >= 32


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://u:p@db.example:5432/app", "postgresql+psycopg2://u:p@db.example:5432/app"),
    ("postgresql://postgres@127.0.0.1/test", "postgresql+psycopg2://postgres@127.0.0.1/test"),
    ("postgresql+psycopg2://postgres@127.0.0.1/test", "postgresql+psycopg2://postgres@127.0.0.1/test"),
    ("sqlite:////tmp/app.db", "sqlite:////tmp/app.db"),
])
def test_normalize_database_url(url, expected):
    """Plain PostgreSQL URLs (and the `postgres://` alias) get the psycopg2 driver; others are left alone."""
    assert normalize_database_url(url) == expected


def test_database_url_from_environment_normalized(clean_env):
    """A `postgres://` DATABASE_URL (as Heroku-style hosts give) works as configured."""
    clean_env.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1/app")
    assert Config().SQLALCHEMY_DATABASE_URI == "postgresql+psycopg2://postgres@127.0.0.1/app"


def test_database_url_override_normalized(clean_env, instance_dir, tmp_path):
    """An app built with a plain PostgreSQL URL (as the tests do) uses the psycopg2 driver."""
    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI="postgresql://postgres@127.0.0.1/none")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://postgres@127.0.0.1/none"


def test_default_database_is_sqlite(clean_env):
    """Without DATABASE_URL the app uses a SQLite file."""
    assert Config().SQLALCHEMY_DATABASE_URI.startswith("sqlite:///")


def test_mail_port_default_without_server(clean_env):
    """Without MAIL_SERVER, mail goes to the local sink on 127.0.0.1:8025."""
    config = Config()
    assert (config.MAIL_SERVER, config.MAIL_PORT) == ("127.0.0.1", 8025)


def test_mail_port_default_with_server(clean_env):
    """With MAIL_SERVER set, the port defaults to SMTP's 25."""
    clean_env.setenv("MAIL_SERVER", "smtp.example.com")
    config = Config()
    assert (config.MAIL_SERVER, config.MAIL_PORT) == ("smtp.example.com", 25)


def test_mail_port_explicit(clean_env):
    """An explicit MAIL_PORT wins over both defaults."""
    clean_env.setenv("MAIL_SERVER", "smtp.example.com")
    clean_env.setenv("MAIL_PORT", "2525")
    assert Config().MAIL_PORT == 2525


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("Yes", True), ("0", False),
                                                 ("false", False), ("", False)])
def test_mail_use_tls(clean_env, value, expected):
    """MAIL_USE_TLS reads the usual yes/no spellings."""
    clean_env.setenv("MAIL_USE_TLS", value)
    assert Config().MAIL_USE_TLS is expected


@pytest.mark.parametrize("name", ["MAIL_PORT", "PORT", "POSTS_PER_PAGE", "MAIL_ATTACHMENT_MAX_BYTES"])
def test_bad_integer_names_the_variable(clean_env, name):
    """A malformed integer stops the start with a ValueError that names the variable and the value."""
    clean_env.setenv(name, "lots")
    with pytest.raises(ValueError) as error:
        Config()
    assert name in str(error.value)
    assert "'lots'" in str(error.value)


def test_bad_integer_stops_create_app(clean_env, instance_dir):
    """create_app itself reports the bad variable (what an operator sees at start-up)."""
    clean_env.setenv("MAIL_PORT", "25x")
    with pytest.raises(ValueError, match="MAIL_PORT"):
        create_app()


def test_defaults(clean_env):
    """Defaults a fresh checkout runs with, as the contract names them."""
    config = Config()
    assert config.SECRET_KEY is None  # generated into the instance folder by create_app
    assert config.REDIS_URL == "redis://localhost:6379/0"
    assert config.TASK_QUEUE == "microblog-tasks"
    assert config.PORT == 5000
    assert config.MAIL_ATTACHMENT_MAX_BYTES == 10485760
    assert config.PUBLIC_URL == "http://127.0.0.1:5000"
    assert config.SOCKETIO_MESSAGE_QUEUE == config.REDIS_URL


def test_environment_values(clean_env):
    """Values from the environment are read when the app is configured."""
    clean_env.setenv("PORT", "6001")
    clean_env.setenv("REDIS_URL", "redis://cache.example:6380/2")
    clean_env.setenv("TASK_QUEUE", "other-queue")
    clean_env.setenv("ADMINS", "ops@example.com, boss@example.com")
    clean_env.setenv("EXPORT_DIR", "/srv/exports")
    config = Config()
    assert config.PORT == 6001
    assert config.PUBLIC_URL == "http://127.0.0.1:6001"
    assert config.REDIS_URL == config.SOCKETIO_MESSAGE_QUEUE == "redis://cache.example:6380/2"
    assert config.TASK_QUEUE == "other-queue"
    assert config.ADMINS == ["ops@example.com", "boss@example.com"]
    assert config.MAIL_DEFAULT_SENDER == "ops@example.com"
    assert config.EXPORT_DIR == "/srv/exports"


def test_public_url_trailing_slash_dropped(clean_env):
    """PUBLIC_URL with a trailing slash still makes clean links (`.../tasks/<id>/download`)."""
    clean_env.setenv("PUBLIC_URL", "https://blog.example/")
    assert Config().PUBLIC_URL == "https://blog.example"


def test_overrides_win_over_environment(clean_env, instance_dir, tmp_path):
    """Keyword overrides to create_app beat the environment (how tests configure an app)."""
    clean_env.setenv("POSTS_PER_PAGE", "3")
    assert build_app(tmp_path).config["POSTS_PER_PAGE"] == 3
    assert build_app(tmp_path, POSTS_PER_PAGE=7).config["POSTS_PER_PAGE"] == 7



def test_the_worker_app_carries_no_migration_machinery():
    """The worker's app never imports Alembic (~22 MB each work horse would carry); `flask db` still works."""
    import subprocess
    import sys

    from tests.harness import ROOT

    probe = ("import sys; from app import create_app; "
             "create_app(SOCKETIO_ASYNC_MODE='threading', SOCKETIO_MESSAGE_QUEUE=None, MIGRATIONS=False); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'flask_migrate', 'eventlet')))")
    worker = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert worker.stdout.strip() == "[]"
    cli = subprocess.run([sys.executable, "-m", "flask", "db", "--help"], cwd=ROOT, capture_output=True, text=True,
                         env={**__import__("os").environ, "FLASK_APP": "app:create_app"})
    assert cli.returncode == 0 and "upgrade" in cli.stdout
