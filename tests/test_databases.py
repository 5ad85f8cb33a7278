"""The schema on every supported database: the one-active-task rule and the migrations both ways."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import pytest
import sqlalchemy as sa

from config import normalize_database_url
from tests.harness import ROOT, migrate


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_database_url(url))


def _insert_task(conn: sa.Connection, task_id: str, status: str) -> None:
    conn.execute(sa.text(
        "INSERT INTO task (id, name, lane, description, user_id, status, progress, delivering, created_at) "
        "VALUES (:id, 'export_posts', 'posts', 'Exporting posts', 1, :status, 0, false, :now)"),
        {"id": task_id, "status": status, "now": datetime(2026, 1, 2, 3, 4, 5, 678901)})


def test_one_active_task_per_user_and_kind(database_url: str) -> None:
    """A second queued/started export of a user is refused by the database; ended ones never count."""
    migrate(database_url)
    engine = _engine(database_url)
    user = engine.dialect.identifier_preparer.quote("user")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {user} (id, username, email) VALUES (1, 'ann', 'ann@example.com')"))
            for n in range(3):
                _insert_task(conn, f"ended-{n}", "finished" if n else "failed")
            _insert_task(conn, "active", "queued")
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                _insert_task(conn, "second", "started")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE task SET status = 'canceled' WHERE id = 'active'"))
            _insert_task(conn, "next", "started")
            stamp = conn.execute(sa.text("SELECT created_at FROM task WHERE id = 'next'")).scalar_one()
        if isinstance(stamp, str):  # SQLite text
            stamp = datetime.fromisoformat(stamp)
        assert stamp.microsecond == 678901, "microseconds survive (DATETIME(6) on MySQL)"
    finally:
        engine.dispose()


def test_latest_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    """`flask db downgrade -1` then `upgrade` works on every database (MySQL's generated column too)."""
    migrate(database_url)
    env = {"DATABASE_URL": database_url, "FLASK_APP": "app:create_app", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    down = subprocess.run([sys.executable, "-m", "flask", "db", "downgrade", "--", "-1"], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr[-2000:]
    migrate(database_url)
    engine = _engine(database_url)
    try:
        assert "task" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
