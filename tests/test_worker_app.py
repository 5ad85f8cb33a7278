"""The worker's app (WEB=False) builds only what jobs use, and its jobs write what the web app's would.

Every work horse is a fork of its worker, and its resident memory counts every page it shares with
it: a module of pages alone that the worker imports weighs on every job (issue 10: ≤ 80 MB).
"""
from __future__ import annotations

import os
import sys
from datetime import datetime
from email.message import EmailMessage

import pytest
from flask import Flask
from flask_babel import force_locale

from tests.factories import make_task
from tests.harness import ROOT, wait_until

# Packages and app modules that only serve pages, sockets, forms, limits, metrics or migrations.
WEB_ONLY = ("flask_wtf", "wtforms", "flask_bootstrap", "flask_limiter", "limits", "prometheus_client",
            "rq_dashboard", "arrow", "eventlet", "gevent", "alembic", "flask_migrate",
            "app.main", "app.auth", "app.errors", "app.tasks", "app.ops", "app.sockets", "app.security",
            "app.admission", "app.limits", "app.web_extensions")


def web_only(modules: list[str]) -> list[str]:
    """The modules of `modules` that belong to WEB_ONLY (a package or anything inside it)."""
    return [m for m in modules if any(m == w or m.startswith(w + ".") for w in WEB_ONLY)]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_work_horse_carries_none_of_the_web_app(stack):
    """A job run by a real `python -m worker` finds the job machinery loaded and no page, form or limit module."""
    from rq import Queue

    from tests.probes import loaded_modules

    job = Queue("microblog-tasks", connection=stack.redis.client()).enqueue(loaded_modules)
    wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), 30, "the probe job to run")
    assert job.get_status() == "finished", stack.logs()
    modules = job.return_value()
    # Preloaded before the fork: a horse re-importing them would start each job ~300 ms later.
    assert {"app.jobs.export", "flask_socketio", "flask_babel", "rq"} <= set(modules)
    assert web_only(modules) == []
    # python-socketio's client libraries, which `import socketio` would bring along (worker/lean.py).
    assert not {"requests", "urllib3", "charset_normalizer", "websocket"} & set(modules)


def test_a_work_horse_starts_with_the_email_templates_compiled(stack):
    """Compiled once in the worker before it forks (worker/warm.py), not in every horse: compiling
    them was 18 % of a small export's CPU."""
    from rq import Queue

    from tests.probes import compiled_templates

    job = Queue("microblog-tasks", connection=stack.redis.client()).enqueue(compiled_templates)
    wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), 30, "the probe job to run")
    assert job.get_status() == "finished", stack.logs()
    assert job.return_value() == ["email/export_posts.html", "email/export_posts.txt",
                                  "email/reset_password.html", "email/reset_password.txt"]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_work_horse_finds_the_resolver_started_by_its_worker(stack):
    """smtplib names the host with socket.getfqdn() in every email, and the first lookup in a process
    starts the C library's resolver (it reads /etc/nsswitch.conf). The worker makes that lookup before
    it forks (worker/warm.py), so its horses do not: strace of a real worker and the horse of a job
    that looks the name up, as smtplib would. The gain (0.65-3.2 ms a horse) is make bench's."""
    import shutil
    import signal

    from rq import Queue, Worker

    from scripts.services import ManagedProcess
    from tests.probes import look_up_host_name

    strace = shutil.which("strace")
    assert strace, "strace is missing (the Makefile's `strace` target installs it)"
    trace = stack.workdir / "worker.strace"
    queue = "microblog-traced"  # this worker's alone: the stack's own worker does not take the probe
    traced = ManagedProcess([strace, "-f", "-qq", "-e", "trace=openat", "-o", str(trace), sys.executable, "-m", "worker"],
                            stack.workdir / "traced-worker.log", env=stack.env(TASK_QUEUE=queue), cwd=str(ROOT)).start()
    connection = stack.redis.client()
    try:
        wait_until(lambda: [w for w in Worker.all(connection=connection) if queue in w.queue_names()], 60,
                   "the traced worker to register in Redis")
        [worker] = [w for w in Worker.all(connection=connection) if queue in w.queue_names()]
        job = Queue(queue, connection=connection).enqueue(look_up_host_name)
        wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), 60, "the probe job to run")
        assert job.get_status() == "finished", traced.tail()
        horse = job.return_value()
        os.kill(worker.pid, signal.SIGTERM)  # the worker, not strace: a killed strace would leave it running
        wait_until(lambda: not traced.alive(), 30, "the traced worker to stop")
    finally:
        traced.stop()
    opened: dict[int, list[str]] = {}
    for line in trace.read_text().splitlines():
        pid, _, call = line.partition(" ")
        opened.setdefault(int(pid), []).append(call)
    reads_nsswitch = lambda pid: any('"/etc/nsswitch.conf"' in call for call in opened.get(pid, []))  # noqa: E731
    assert horse != worker.pid and horse in opened, "strace did not follow the work horse"
    assert not reads_nsswitch(horse), "the work horse started its own resolver"
    # And the trace can see what it looks for: the worker did start one, before it forked.
    assert reads_nsswitch(worker.pid), "the worker never started its resolver"


def test_a_work_horse_starts_with_the_jobs_sql_compiled(stack):
    """A real worker compiles an export's SQL before it forks (worker/warm.py's warm_statements), so its
    horses find it in the engine's cache: compiling it anew was about a fifth of a small export's CPU."""
    from rq import Queue

    from tests.probes import statements_compiled_for_a_task

    job = Queue("microblog-tasks", connection=stack.redis.client()).enqueue(statements_compiled_for_a_task)
    wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), 30, "the probe job to run")
    assert job.get_status() == "finished", stack.logs()
    assert job.return_value() == []


def export_email(app: Flask, user_id: int, task_id: str, path, language: str, monkeypatch) -> EmailMessage:
    """The export email `app` writes in `language` (captured instead of sent)."""
    from app import mailer
    from app.extensions import db
    from app.jobs import export
    from app.models import Task, User

    sent: list[EmailMessage] = []
    monkeypatch.setattr(mailer, "send", lambda msg, attachment=None: sent.append(msg))
    monkeypatch.setattr(export, "utcnow", lambda: datetime(2026, 12, 6, 12, 0))  # the expiry line
    with app.app_context(), force_locale(language):
        assert export.send_export_email(db.session.get(User, user_id), db.session.get(Task, task_id), path,
                                        count=12345) is None
    return sent[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("language", ["en", "es"])
def test_the_worker_app_writes_the_same_export_email(app, make_user, tmp_path, language, monkeypatch):
    """The text and HTML of the export email, link included, are byte for byte the full app's."""
    from app import create_app

    worker_app = create_app(WEB=False, MIGRATIONS=False, **{k: app.config[k] for k in (
        "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "REDIS_URL", "EXPORT_DIR", "PUBLIC_URL")})
    assert "tasks" not in worker_app.blueprints and "csrf" not in worker_app.extensions
    user = make_user()
    task_id = make_task(app, user.id)
    path = tmp_path / "posts.json"
    path.write_bytes(b"{}")
    full = export_email(app, user.id, task_id, path, language, monkeypatch)
    lean = export_email(worker_app, user.id, task_id, path, language, monkeypatch)
    parts = [(p.get_content_type(), p.get_content()) for p in full.walk() if p.get_content_maintype() == "text"]
    assert parts == [(p.get_content_type(), p.get_content()) for p in lean.walk() if p.get_content_maintype() == "text"]
    assert len(parts) == 2 and all(f"{app.config['PUBLIC_URL']}/tasks/{task_id}/download" in text for _, text in parts)
    assert full["Subject"] == lean["Subject"]
