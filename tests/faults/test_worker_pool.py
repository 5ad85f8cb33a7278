"""`python -m worker --processes N`: RQ's WorkerPool keeps N of our workers running."""
from __future__ import annotations

import os
import signal
import time

from tests.deploy_harness import children, live_workers, pid_alive, start_pool
from tests.faults.conftest import horse_pids, running_export
from tests.harness import assert_well_ordered, wait_until

WORKER_DIED = "The worker stopped unexpectedly"


def test_pool_member_sigkilled_mid_export_is_replaced(make_stack):
    """SIGKILL the member running an export: the task fails, the pool is back to N within 10 s, exports run."""
    stack = make_stack(workers=0)
    pool = start_pool(stack, 2)
    user, watcher, task_id = running_export(stack)
    try:
        (victim,) = [m for m in children(pool.pid) if horse_pids(m)]
        horse = horse_pids(victim)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        def back_to_two() -> bool:
            registered = [w for w in live_workers(stack) if pid_alive(w.pid)]
            return (len(live_workers(stack)) == 2 and len(registered) == 2
                    and victim not in {w.pid for w in registered})

        wait_until(back_to_two, 10, "the pool to be back to 2 registered workers")
        print(f"\npool back to 2 workers {time.monotonic() - killed_at:.1f} s after the kill")
        assert set(children(pool.pid)) == {w.pid for w in live_workers(stack)}
        end = watcher.terminal(task_id, timeout=120)
        assert end["status"] == "failed" and end["message"].startswith(WORKER_DIED), end
        print(f"task failed {time.monotonic() - killed_at:.1f} s after the kill")
        assert_well_ordered(watcher.of(task_id))
        wait_until(lambda: not any(pid_alive(p) for p in horse), 10, "the killed member's work horse to die")
        again = user.export()
        stack.release(again, 100)  # exports in fault tests are held at the test's gate (tests/jobs.py)
        assert watcher.terminal(again, timeout=120)["status"] == "finished"
    finally:
        watcher.close()


def test_pool_stops_every_member_on_sigterm(make_stack):
    """SIGTERM to the pool parent stops it and its members, and they leave the Redis registry."""
    stack = make_stack(workers=0, web=False)
    pool = start_pool(stack, 2)
    members = children(pool.pid)
    pool.proc.terminate()
    pool.proc.wait(20)
    wait_until(lambda: not any(pid_alive(m) for m in members), 10, "the members to exit")
    assert live_workers(stack) == []
