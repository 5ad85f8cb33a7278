"""Crashes of the worker and of its work horse mid-export: the task ends failed, visibly, soon."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.conftest import finish, horse_pids, running_export
from tests.harness import assert_well_ordered, wait_until

WORKER_DIED = "The worker stopped unexpectedly"


@pytest.mark.parametrize("victims", ["worker-and-horse", "worker-only"])
def test_worker_sigkill_mid_export(make_stack, victims):
    """SIGKILL of the worker (with or without its horse): failed within 2 minutes, seen live; export again."""
    stack = make_stack()
    user, watcher, task_id = running_export(stack)
    try:
        worker = stack.workers[0]
        horses = horse_pids(worker.pid)
        assert horses, "the export runs in a forked work horse"
        killed_at = time.monotonic()
        worker.kill()
        if victims == "worker-and-horse":
            for pid in horses:
                os.kill(pid, signal.SIGKILL)
        end = watcher.terminal(task_id, timeout=120)
        seen_after = time.monotonic() - killed_at
        assert end["status"] == "failed", end
        assert end["message"].startswith(WORKER_DIED)
        assert seen_after < 120
        assert_well_ordered(watcher.of(task_id))
        print(f"\n{victims}: terminal state seen {seen_after:.1f} s after the kill")
        # An orphaned horse notices its task ended and stops instead of finishing unseen work.
        wait_until(lambda: not any(os.path.exists(f"/proc/{p}") and _not_zombie(p) for p in horses), 30,
                   "the orphaned work horse to exit")
        stack.start_worker()
        again = user.export()
        assert finish(stack, watcher, again, timeout=120)["status"] == "finished"
    finally:
        watcher.close()


def test_work_horse_killed_fails_within_seconds(make_stack):
    """SIGKILL of the forked child: the worker itself ends the task failed at once and keeps serving."""
    stack = make_stack()
    user, watcher, task_id = running_export(stack)
    try:
        (horse,) = horse_pids(stack.workers[0].pid)
        killed_at = time.monotonic()
        os.kill(horse, signal.SIGKILL)
        end = watcher.terminal(task_id, timeout=30)
        seen_after = time.monotonic() - killed_at
        assert end["status"] == "failed" and end["message"].startswith(WORKER_DIED)
        assert seen_after < 5, seen_after
        print(f"\nwork horse killed: terminal state seen {seen_after:.2f} s after the kill")
        assert not any(stack.export_dir.rglob(f"{task_id}*")), "partial file left behind"
        again = user.export()
        assert finish(stack, watcher, again, timeout=120)["status"] == "finished"
    finally:
        watcher.close()


def _not_zombie(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
