"""What every work horse would otherwise build for itself, built once in the worker before it forks.

A work horse is a fork of the worker: it starts with whatever the worker holds, and what it builds
it builds anew and drops when its job ends. py-spy of 150 exports of 100 posts (one worker): a
horse spent 18 % of its CPU compiling the email's Jinja templates, every job. Compiled here, they
cost no memory worth measuring (70.2 MiB resident either way) and every horse shares them.

Not warmed, though it was another 18.5 %: Babel's locale data, which `thousands` loaded. It is
4.7 MiB resident for English alone, and held by the worker it would add to every horse's RSS
from the first instant, under the export's own peak (the 1M-post horse: 76.4 -> 81.2 MiB, over
issue 10's 80). The email's count no longer needs it: `app.i18n.format_count` writes the
separators of the languages we serve itself.

The SQL statements of an export are compiled here too (warm_statements): SQLAlchemy caches a
compiled statement in its engine, and a horse's cache began empty, so every job compiled the same
dozen statements again: 12 ms of CPU, about a fifth of a small export's work (measured in one
process: an export's statements took 15.2 ms cold, 2.9-3.5 ms cached).

This module runs in the worker: no eventlet here.
"""
from __future__ import annotations

import socket

from flask import Flask

EMAIL_TEMPLATES = "email/"


def warm(app: Flask) -> None:
    """Compile the email templates into the app's Jinja cache and start the resolver (every horse inherits both)."""
    env = app.jinja_env
    # Jinja keeps compiled templates in env.cache (400 by default; these are a handful).
    for name in env.list_templates(filter_func=lambda name: name.startswith(EMAIL_TEMPLATES)):
        env.get_template(name)
    # smtplib.SMTP() names this host in its EHLO with socket.getfqdn() (Flask-Mail gives it no name),
    # and the first lookup in a process initialises the C library's resolver: strace shows a fresh
    # horse asking nscd twice and reading nsswitch.conf, host.conf and resolv.conf before /etc/hosts,
    # 0.65-3.2 ms, against 0.24-0.48 ms in one forked after its worker had looked. 300 exports of 100
    # posts, 2 workers, alternated: worker CPU 14.9 -> 14.3 s, 25.6 -> 26.8 jobs/s (medians of 4).
    socket.getfqdn()


# No task or user has these: every statement below matches no row, so warming changes nothing.
NO_TASK = "warm-no-such-task"
NO_USER = 0


def warm_statements() -> None:
    """Compile the SQL an export runs into the engine's statement cache (which every forked horse inherits).

    Each call is the job's own code, on a task and a user that do not exist: the UPDATEs match no
    row, so nothing changes and nothing is published.
    """
    from app.extensions import db
    from app.i18n import task_language
    from app.jobs.export import WRITE_SHARE, count_posts, iter_posts
    from app.models import Task, TaskStatus, User
    from app.progress import ProgressPublisher, TaskCanceled, end_task, read_seq, write_heartbeat

    task_language(NO_TASK)
    publisher = ProgressPublisher(NO_TASK)
    publisher.start()  # None: no queued task matched
    for step in (lambda: publisher.advance_count(1, 2, share=WRITE_SHARE), lambda: publisher.begin_delivery("")):
        try:
            step()
        except TaskCanceled:  # what a job meets when its task is gone: here, after its UPDATE ran
            pass
    write_heartbeat(NO_TASK)
    end_task(NO_TASK, TaskStatus.FINISHED, None, result_path="", current=1, total=1, result_bytes=1,
             delivery="attached")
    count_posts(NO_USER)
    for _ in iter_posts(NO_USER):  # MySQL's batches are SQLAlchemy's (the others read with the driver)
        pass
    read_seq(NO_TASK)  # MySQL reads `seq` back after a changed row (no UPDATE ... RETURNING)
    db.session.get(Task, NO_TASK)
    db.session.get(User, NO_USER)
    db.session.commit()
