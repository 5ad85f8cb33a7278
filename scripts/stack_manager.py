"""honcho's Manager, except that a process marked `restart` is started again when it exits.

honcho stops the whole stack as soon as one of its processes exits, so a worker pool parent that
dies (a crash, the OOM killer, a `kill -9`) would take `make run` down with it. This is the one
restart layer for the pool PARENT; the parent itself (RQ's WorkerPool, worker/pool.py) is the one
restart layer for its members. Nothing restarts a process twice over.

A restart happens in honcho's per-process runner (a forked child of the manager): it starts the
command again, tells the manager the new PID (a new `start` message), and keeps relaying output.
Once the manager is stopping (Ctrl-C, SIGTERM, another process exited) nothing restarts.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from functools import partial
from typing import Any

from honcho.manager import Manager
from honcho.process import Process

PR_SET_PDEATHSIG = 1
MIN_DELAY = 0.5
MAX_DELAY = 30.0
# A child that ran this long had a real run, so the next restart is quick again.
HEALTHY_AFTER = 30.0


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM if its parent is killed, even by SIGKILL (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class RestartingProcess(Process):
    """A honcho Process whose command is started again whenever it exits, until the stack stops."""

    def __init__(self, *args: Any, stopping: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = stopping  # a multiprocessing.Event the manager sets when it stops

    def run(self, events: Any = None, ignore_signals: bool = False) -> None:
        """Run, relay output, restart on exit with a back-off; report `stop` only once stopping."""
        self._events = events
        if ignore_signals:  # as honcho's own runner: the manager signals the command's group
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        delay, groups = MIN_DELAY, []
        while True:
            started = time.monotonic()
            self._child = self._child_ctor(self.cmd, env=self.env, cwd=self.cwd)
            groups.append(self._child.pid)
            self._send_message({"pid": self._child.pid}, type="start")
            if self.stopping.is_set():  # the stop came while we started it: its SIGTERM missed us
                _signal_group(self._child.pid, signal.SIGTERM)
            # Relay output in a thread: the command's own children (pool members finishing a job)
            # may hold the pipe open after it died, and the restart must not wait for them.
            relay = threading.Thread(target=self._relay, args=(self._child.stdout,), daemon=True)
            relay.start()
            code = self._child.wait()
            if self.stopping.is_set():
                break
            delay = MIN_DELAY if time.monotonic() - started > HEALTHY_AFTER else min(delay * 2, MAX_DELAY)
            self._send_message(f"exited ({_describe(code)}); restarting in {delay:.1f} s\n".encode())
            if self.stopping.wait(delay):
                break
        relay.join(5)
        for pgid in groups[:-1]:  # leftovers of earlier runs (members still finishing a job)
            _signal_group(pgid, signal.SIGTERM)
        self._send_message({"returncode": code}, type="stop")

    def _relay(self, stdout: Any) -> None:
        for line in iter(stdout.readline, b""):
            if not self.quiet:
                self._send_message(line)
        stdout.close()


class StackManager(Manager):
    """honcho's Manager with `add_process(..., restart=True)`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = multiprocessing.Event()

    def add_process(self, name: str, cmd: str, quiet: bool = False, env: dict | None = None,
                    cwd: str | None = None, restart: bool = False) -> Process:
        """Add a process; with restart=True it is started again whenever it exits."""
        if not restart:
            return super().add_process(name, cmd, quiet=quiet, env=env, cwd=cwd)
        plain, self._process_ctor = self._process_ctor, partial(RestartingProcess, stopping=self.stopping)
        try:
            return super().add_process(name, cmd, quiet=quiet, env=env, cwd=cwd)
        finally:
            self._process_ctor = plain

    def terminate(self) -> None:
        """Stop everything; from now on no process is restarted."""
        self.stopping.set()
        super().terminate()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _describe(code: int) -> str:
    """How a child ended, in words."""
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"
