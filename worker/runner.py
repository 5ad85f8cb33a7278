"""The RQ worker: a forking Worker on TASK_QUEUE, inside an app context, with the sweep beside it.

Never imports eventlet: jobs run in plain forked processes. The parent preloads the job modules
and the Socket.IO emitter before forking, so each job starts without re-importing them.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import threading
from typing import Any

import redis

from dotenv import load_dotenv
from flask import Flask
from flask_socketio import SocketIO
from rq import Queue, Worker

from worker.warm import warm, warm_statements

log = logging.getLogger("worker")

# SQLite and SQLAlchemy keep process-wide locks: a fork while the sweeper thread is inside the
# database copies them held, and the work horse hangs forever on its first query (seen once in
# 1,000 exports: stuck in `PRAGMA journal_mode` until RQ's job timeout, an hour). The sweeper holds
# this while it uses the database, and a fork waits for it.
FORK_GUARD = threading.Lock()

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class MicroblogWorker(Worker):
    """RQ's forking Worker plus the hooks that keep Task rows honest."""

    # RQ backs off up to 60 s between reconnects; after a Redis restart users would wait that long.
    max_connection_wait_time = 2.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, after registering the worker again if Redis lost its record.

        A Redis restarted without persistence forgets every worker; RQ's heartbeat then recreates
        only the worker's hash, never its entry in the workers set, so `/healthz`, the dashboard
        and `microblog_workers` would count this live worker as gone for the rest of its life.
        RQ calls this at the top of every dequeue loop (so right after Redis returns) and while a
        job runs; a Redis still down raises here as it would in RQ's own heartbeat.
        """
        if self.birth_date is not None and not self.connection.exists(self.key):
            self.register_birth()  # RQ's own registration (its birth is now: Redis lost the old one)
            log.warning("Redis had forgotten worker %s (restarted without its data?): registered it again", self.name)
        super().heartbeat(timeout, pipeline)

    def fork_work_horse(self, job: Any, queue: Queue) -> None:
        """Fork with the parent's objects frozen: the horse's garbage collector then never walks them,
        so it never un-shares the parent's pages (a 1M-post export grew 28 MiB of private memory so).
        And never while the sweeper thread is inside the database (FORK_GUARD)."""
        with FORK_GUARD:
            gc.freeze()
            try:
                super().fork_work_horse(job, queue)
            finally:
                gc.unfreeze()  # only the parent gets here: the horse exits inside

    def main_work_horse(self, job: Any, queue: Queue) -> None:
        """In the forked child: die with the worker, leave the parent's connections alone, own a session."""
        from flask import current_app

        from app.extensions import db
        from app.jobs.heartbeat import heartbeat

        die_with_parent()
        db.engine.dispose(close=False)  # the parent's pooled connections are its own: never use or close them
        if inherited_transaction():
            log.error("work horse %s inherited an open database transaction from its worker", os.getpid())
        # A fresh app context: the job's session is its own, whatever the parent's context holds.
        with current_app._get_current_object().app_context(), heartbeat(job.id):
            super().main_work_horse(job, queue)  # ends the process (os._exit), and the beat with it

    def perform_job(self, job: Any, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        """Run the job in its launcher's language: its messages and email are written in it (job id = task id)."""
        from app.i18n import task_locale

        with task_locale(job.id):
            return super().perform_job(job, queue, *args, **kwargs)

    def handle_work_horse_killed(self, job: Any, retpid: int | None, ret_val: int | None, rusage: Any) -> None:
        """The child died without reporting (OOM, SIGKILL): fail its task now, not at the next sweep."""
        from app.jobs.callbacks import on_work_horse_killed

        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        try:
            on_work_horse_killed(job.id, ret_val)
        except Exception:  # the sweep will retry; the worker must keep serving
            log.exception("could not end task %s after its work horse died", job.id)


def inherited_transaction() -> bool:
    """Whether this process's current session holds a transaction (in a new work horse: one it inherited)."""
    from app.extensions import db

    return db.session.registry.has() and db.session().in_transaction()


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so no job runs on without its worker.

    An orphaned work horse has nobody to heartbeat for it: the sweep would fail its task while it
    kept running and maybe mailed a result the user was told had failed.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the sweep still ends the task
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def build_emitter(app: Flask) -> SocketIO:
    """The write-only Socket.IO emitter; threading mode so eventlet is never pulled in."""
    return SocketIO(message_queue=app.config["REDIS_URL"], channel="flask-socketio", async_mode="threading")


def start_sweeper(app: Flask, stop: threading.Event) -> threading.Thread:
    """Run the abandoned-task sweep every SWEEP_INTERVAL seconds in a daemon thread (it never dies of an error)."""
    from app.jobs.sweep import sweep_forever

    thread = threading.Thread(target=sweep_forever, args=(app, stop.wait, FORK_GUARD), name="task-sweeper",
                              daemon=True)
    thread.start()
    return thread


def wait_for_redis(stop: threading.Event, interval: float = 1.0) -> None:
    """Block until Redis answers PING (or stop is set)."""
    from app.jobs import redis_client

    while not stop.is_set():
        try:
            if redis_client().ping():
                return
        except redis.exceptions.RedisError:
            pass
        stop.wait(interval)


def main(argv: list[str] | None = None) -> None:
    """`python -m worker [--processes N]`: one worker, or a pool of N (worker/pool.py)."""
    from worker.pool import parse_processes, run_pool

    processes = parse_processes(argv)
    if processes is not None:
        run_pool(processes)
    else:
        serve()


def serve() -> None:
    """Run one worker until SIGTERM/SIGINT (RQ finishes the current job on the first signal)."""
    load_dotenv()
    from app import create_app
    from app.extensions import db
    from app.jobs import redis_client, task_queue
    from app.jobs.sweep import sweep_once

    # Only what jobs use (WEB=False): no pages, sockets, forms or limits (no eventlet either), and no
    # migrations. Every work horse is a fork of this process and its RSS counts the pages they share.
    app = create_app(WEB=False, MIGRATIONS=False)
    app.extensions["progress_emitter"] = build_emitter(app)
    with app.app_context():
        warm(app)  # the email templates, compiled once for every work horse (worker/warm.py)
        try:
            warm_statements()  # and an export's SQL
        except Exception:  # only a saving: a database not up yet is the sweep's and the jobs' to report
            db.session.rollback()
            log.warning("could not compile an export's SQL ahead (is the database up?): each job compiles its own",
                        exc_info=True)
        sweep_once()  # tasks left by a previous run (e.g. an embedded Redis that restarted); removes its session
        stop = threading.Event()
        start_sweeper(app, stop)
        try:
            while True:
                db.engine.dispose()  # children must not inherit connections the sweeps opened
                worker = MicroblogWorker(
                    [task_queue()],
                    connection=redis_client(),
                    job_monitoring_interval=app.config["JOB_MONITORING_INTERVAL"],
                )
                log.info("worker %s (pid %s) listening on %s", worker.name, os.getpid(), app.config["TASK_QUEUE"])
                try:
                    worker.work(logging_level="INFO", with_scheduler=False)
                except redis.exceptions.RedisError as exc:  # RQ's teardown itself needs Redis
                    log.warning("worker lost Redis: %s", exc)
                if worker._shutdown_requested_date is not None:  # SIGTERM/SIGINT, idle or busy
                    break
                # RQ quits its loop when Redis vanishes mid-job; a running work horse goes on.
                log.warning("worker loop ended unexpectedly; starting again once Redis answers")
                wait_for_redis(stop)
        finally:
            stop.set()
