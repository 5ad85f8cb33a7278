"""`python -m worker --processes N`: N workers under one parent, with RQ's own WorkerPool.

RQ's pool forks its members and runs `rq.worker_pool.run_worker` in them: a bare worker with no
app context, no Socket.IO emitter, RQ's default job monitoring and the scheduler on. Our members
run `worker.runner.serve` instead, the very routine a single `python -m worker` runs (app,
emitter, hooks, sweep, reconnect loop), so a pool member behaves exactly like a lone worker.
What stays RQ's: forking, reaping, respawning (checked every second) and the stop on SIGTERM.

Restart layer: the pool parent restarts its members, and nothing else does. Whoever starts the
pool parent (`make run`'s scripts/dev.py, Supervisor, systemd) restarts the parent alone.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from multiprocessing import get_context
from multiprocessing.process import BaseProcess

from rq import Worker
from rq.worker_pool import WorkerData, WorkerPool

from worker.runner import MicroblogWorker

log = logging.getLogger("worker.pool")
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def parse_processes(argv: list[str] | None) -> int | None:
    """`--processes N` from the command line (None when absent: a single worker, no pool)."""
    parser = argparse.ArgumentParser(prog="python -m worker")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="run N workers under one parent that restarts any of them that dies")
    processes = parser.parse_args(argv).processes
    if processes is not None and processes < 1:
        parser.error("--processes must be at least 1")
    return processes


class MicroblogWorkerPool(WorkerPool):
    """RQ's WorkerPool whose members run our worker routine, and forget dead members in Redis."""

    def get_worker_process(self, name: str, burst: bool, _sleep: float = 0,
                           logging_level: str = "INFO") -> BaseProcess:
        """A forked member running `run_member` instead of RQ's bare `run_worker`."""
        return get_context("fork").Process(target=run_member, name=f"Worker {name} (WorkerPool {self.name})")

    def handle_dead_worker(self, worker_data: WorkerData) -> None:
        """Drop the dead member's registration too: a SIGKILLed worker never deregisters itself,
        and RQ would list it among the workers for its TTL (7 minutes) beside its replacement."""
        super().handle_dead_worker(worker_data)
        log.warning("pool member %s died (exit code %s); starting a new one",
                    worker_data.pid, worker_data.process.exitcode)
        host = socket.gethostname()
        try:
            for worker in Worker.all(connection=self.connection):
                if worker.pid == worker_data.pid and worker.hostname == host:
                    worker.register_death()
        except Exception:  # Redis away: the registration expires by itself; respawning matters more
            log.exception("could not deregister dead pool member %s", worker_data.pid)


def run_member() -> None:
    """In a forked member: reset the pool's signal handlers, die with the pool, run one worker."""
    from worker.runner import serve

    # Forked after the pool installed its handlers: a SIGTERM here must stop this worker, not
    # make it act as the pool (RQ's worker installs its own handlers once it starts working).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _term_with_parent()
    serve()


def _term_with_parent() -> None:
    """Linux: SIGTERM this member when the pool parent dies (even by SIGKILL): a warm shutdown,
    so its running job still finishes, and no orphan keeps serving beside the parent's successor."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: orphans run on until stopped
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def run_pool(processes: int) -> None:
    """Start the pool and block until SIGTERM/SIGINT has stopped every member."""
    from dotenv import load_dotenv

    load_dotenv()
    # Import what every member needs before forking (as `rq worker -c` preloading does), but build
    # no app, open no database connection and start no thread here: members inherit all of it.
    import app.jobs  # noqa: F401  (the job modules, models, the emitter's flask_socketio)
    import redis
    from config import Config

    config = Config()
    pool = MicroblogWorkerPool([config.TASK_QUEUE], connection=redis.Redis.from_url(config.REDIS_URL),
                               num_workers=processes, worker_class=MicroblogWorker)
    log.info("worker pool (pid %s): %s workers on %s", os.getpid(), processes, config.TASK_QUEUE)
    pool.start(burst=False, logging_level="INFO")
