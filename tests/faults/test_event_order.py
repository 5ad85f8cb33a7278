"""Event order on the wire (defect 6): a page never sees a task go backwards, whatever crosses.

Made deterministic by publishing on the real Redis channel exactly what a racing worker or a
racing snapshot would deliver, in the order that used to break pages.
"""
from __future__ import annotations

import sys
import threading
import time
import uuid

from tests.harness import new_user, publish_raw, user_id_of


def test_older_event_published_after_a_newer_one_never_reaches_the_page(make_stack):
    """Events of one task crossing on the channel (worker vs web) reach a page in seq order only."""
    stack = make_stack(workers=0)
    user = new_user(stack)
    watcher = user.socket()
    try:
        uid = user_id_of(stack.database_url, user.username)
        task, sentinel = "race-" + uuid.uuid4().hex, "sentinel-" + uuid.uuid4().hex
        base = {"task_id": task, "name": "export_posts", "description": "Exporting posts", "message": None,
                "download_url": None}
        for seq, status, progress in [(5, "started", 50), (3, "started", 30), (8, "canceled", 50),
                                      (6, "started", 60), (2, "queued", 0)]:
            publish_raw(stack.redis.url, uid, {**base, "seq": seq, "status": status, "progress": progress})
        publish_raw(stack.redis.url, uid, {**base, "task_id": sentinel, "seq": 1, "status": "queued", "progress": 0})
        watcher.wait_for(lambda e: e["task_id"] == sentinel, timeout=10, what="the sentinel event")
        seen = [(e["seq"], e["status"], e["progress"]) for e in watcher.of(task)]
        assert seen == [(5, "started", 50), (8, "canceled", 50)], seen
    finally:
        watcher.close()


def test_a_burst_of_events_reaches_a_socket_whole_and_in_order(make_stack):
    """400 steps of one task published back to back by one publisher: each arrives, in order.

    Also the harness's own check (tests/harness.InOrderClient): python-socketio's stock client runs
    each message's handler in a thread of its own, and recorded this burst out of order in 3 runs
    of 3 (step 2 before step 1, 53 before 52). The chaos soak once blamed the server for that."""
    stack = make_stack(workers=0)
    user = new_user(stack)
    watcher = user.socket()
    busy = threading.Event()
    # Other threads of this process wanting the GIL, as the soak's 30 users and 60 sockets do: the
    # stock client's thread for step N then often ran after its thread for step N+1.
    spinners = [threading.Thread(target=_spin, args=(busy,), daemon=True) for _ in range(2)]
    for spinner in spinners:
        spinner.start()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # and switching between them often, as on a loaded machine
    try:
        task = "burst-" + uuid.uuid4().hex
        base = {"task_id": task, "name": "export_posts", "description": "Exporting posts", "message": None,
                "download_url": None, "status": "started"}
        steps = range(1, 401)
        publish_raw(stack.redis.url, user_id_of(stack.database_url, user.username),
                    *({**base, "seq": seq, "progress": seq // 5} for seq in steps))
        watcher.wait_for(lambda e: e["task_id"] == task and e["seq"] == steps[-1], timeout=20, what="the last step")
        assert [e["seq"] for e in watcher.of(task)] == list(steps)
    finally:
        busy.set()
        sys.setswitchinterval(interval)
        watcher.close()


def _spin(done: threading.Event) -> None:
    """Keep the interpreter busy until told to stop."""
    while not done.is_set():
        sum(range(1000))


def test_resync_after_redis_outage_never_sends_an_older_snapshot(make_stack):
    """A live event newer than the row the re-sync reads is not followed by that older row."""
    stack = make_stack(held=False, SWEEP_ENQUEUE_GRACE="600")
    user = new_user(stack, posts=5)
    watcher = user.socket()
    try:
        first = user.export()
        end = watcher.terminal(first)
        second = user.export()
        watcher.terminal(second)
        # What a worker publishing a newer state of `first` would deliver, just before the outage.
        newer = {**end, "seq": end["seq"] + 10, "message": "a newer state"}
        publish_raw(stack.redis.url, user_id_of(stack.database_url, user.username), newer)
        watcher.wait_for(lambda e: e.get("message") == "a newer state", timeout=10, what="the newer event")
        stack.redis.stop()
        stack.redis.start()
        restarted = time.monotonic()
        # The re-sync sends the snapshot in creation order: `first`, then `second`.
        watcher.wait_for(lambda e: e["task_id"] == second and watcher.received_at[id(e)] > restarted,
                         timeout=15, what="the re-sync after the outage")
        seqs = [e["seq"] for e in watcher.of(first)]
        assert seqs == sorted(seqs) and seqs[-1] == newer["seq"], seqs
    finally:
        watcher.close()
