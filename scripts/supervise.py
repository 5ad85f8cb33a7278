"""`python -m scripts.supervise [--grace SECONDS] -- COMMAND...`: keep COMMAND running.

honcho stops the whole stack as soon as one of its processes exits, so a worker that dies (a
crash, the OOM killer, a `kill -9`) would take `make run` down with it. This wrapper restarts the
command instead, with a back-off so a command that cannot start does not spin. SIGTERM or SIGINT
stop the command and then the wrapper, never a restart.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

POLL = 0.1
MIN_DELAY = 0.5
MAX_DELAY = 30.0
# A child that ran this long had a real run, so the next restart is quick again.
HEALTHY_AFTER = 30.0
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM if its parent is killed, even by SIGKILL (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Runs one command, restarts it when it exits, stops it on request."""

    def __init__(self, command: list[str], grace: float) -> None:
        self.command = command
        self.grace = grace
        self.child: subprocess.Popen | None = None
        self.stop_requested_at: float | None = None

    def request_stop(self, signum: int, _frame: object) -> None:
        """Signal handler: stop the child once; escalation runs on the supervisor's own clock."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            self._signal_child(signal.SIGTERM)

    def _signal_child(self, signum: int) -> None:
        # The child shares our process group, so honcho's group signals (SIGTERM, then SIGKILL)
        # reach it even if we are gone. It may thus get SIGTERM twice at once: RQ ignores a repeat
        # within 1 s; we forward anyway for a `kill` aimed at this PID alone.
        if self.child is not None and self.child.poll() is None:
            try:
                os.kill(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def _wait_child(self) -> int:
        """Wait for the child to exit; after a stop request, escalate to a second SIGTERM, then SIGKILL."""
        assert self.child is not None
        escalated = 0
        while True:
            try:
                return self.child.wait(POLL)
            except subprocess.TimeoutExpired:
                pass
            if self.stop_requested_at is None:
                continue
            waited = time.monotonic() - self.stop_requested_at
            # Well inside honcho's 5 s before it SIGKILLs us: a second SIGTERM makes an RQ worker
            # take its running work horse down with it, then SIGKILL leaves nothing behind.
            if escalated == 0 and waited > self.grace:
                escalated = 1
                self._signal_child(signal.SIGTERM)
            elif escalated == 1 and waited > self.grace + 1:
                escalated = 2
                self._signal_child(signal.SIGKILL)

    def run(self) -> int:
        """Restart the command whenever it exits, until a stop is requested; then return 0."""
        delay = MIN_DELAY
        while self.stop_requested_at is None:
            started = time.monotonic()
            # preexec_fn is safe: the supervisor never starts a thread.
            self.child = subprocess.Popen(self.command, preexec_fn=die_with_parent)  # noqa: PLW1509
            if self.stop_requested_at is not None:  # the signal came while we were starting it
                self._signal_child(signal.SIGTERM)
            code = self._wait_child()
            if self.stop_requested_at is not None:
                return 0
            delay = MIN_DELAY if time.monotonic() - started > HEALTHY_AFTER else min(delay * 2, MAX_DELAY)
            print(f"supervise: {describe(code)}; restarting in {delay:.1f} s", file=sys.stderr, flush=True)
            deadline = time.monotonic() + delay
            while self.stop_requested_at is None and time.monotonic() < deadline:
                time.sleep(POLL)
        return 0


def describe(code: int) -> str:
    """How a child ended, in words."""
    if code < 0:
        return f"process killed by {signal.Signals(-code).name}"
    return f"process exited with status {code}"


def main(argv: list[str]) -> int:
    """Parse `[--grace S] -- COMMAND...`, install the stop handlers and supervise."""
    parser = argparse.ArgumentParser(prog="python -m scripts.supervise")
    parser.add_argument("--grace", type=float, default=3.0,
                        help="seconds the command gets to stop before a second SIGTERM (default 3)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    supervisor = Supervisor(command, args.grace)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
