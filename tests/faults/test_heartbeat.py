"""A live export is judged by the heartbeat its job writes into the Task row, not by what Redis
remembers: a Redis restart (no persistence, so the job's data is gone) must not fail it."""
from __future__ import annotations

import json
import time

from tests.harness import Stack, new_user, wait_until

# Tests run JOB_MONITORING_INTERVAL=2: a started task is dead after 3 * 2 + 5 s without a beat.
HEARTBEAT_LIMIT = 3 * 2 + 5
SWEEP_RECORD = "microblog:sweep:last"


def last_sweep(stack: Stack) -> float:
    """When the deployment's sweeper last finished a sweep (epoch seconds), 0 if never or unknown."""
    try:
        value = stack.redis.client().hget(SWEEP_RECORD, "at")
    except Exception:  # Redis is down right now
        return 0.0
    return float(value) if value else 0.0


def test_live_export_survives_redis_restarts(make_stack):
    """Redis restarts while the job sends its email (no progress to report for a while): the sweep
    leaves the task alone past the enqueue grace and the heartbeat limit; Redis is down again when
    the job ends, so RQ's own bookkeeping fails; still the export finishes, downloads and is mailed,
    and the open page sees `finished` once Redis is back."""
    stack = make_stack(held=False, MAIL_TIMEOUT="120")  # the SMTP hold keeps it running
    user = new_user(stack, posts=300)
    watcher = user.socket()
    stack.smtp.hold()
    try:
        task_id = user.export()
        stack.smtp.wait_held(60)  # the job waits on the email: its horse is alive and silent
        stack.redis.stop()
        stack.redis.start()
        restarted = time.time()

        def status() -> str:
            return user.get(f"/api/tasks/{task_id}").json()["status"]

        # A sweep that ran this long after the restart judged the task with its job gone from Redis.
        wait_until(lambda: status() != "started" or last_sweep(stack) > restarted + HEARTBEAT_LIMIT + 2, 60,
                   "a sweep past the heartbeat limit")
        assert status() == "started", user.get(f"/api/tasks/{task_id}").json()

        stack.redis.stop()  # the job ends with Redis gone: RQ cannot record its success
        stack.smtp.release()
        wait_until(lambda: status() != "started", 60, "the export to end")
        stack.redis.start()
        end = watcher.terminal(task_id, timeout=30)  # through the re-sync after Redis returned
        assert end["status"] == "finished" and end["message"] is None, end
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == 300
        assert stack.smtp.wait_for(user.email).attachment("posts.json") is not None
    finally:
        stack.smtp.release()
        watcher.close()
