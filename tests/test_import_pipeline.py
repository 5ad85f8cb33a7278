"""The import through the real deployment (web server, RQ worker, Redis) on SQLite and PostgreSQL:
the export/import round trip, a bad file failing in the worker, and a 20 MB file's memory and rate."""
from __future__ import annotations

import json
import re

import pytest

from tests.harness import Browserless, Stack, assert_well_ordered, new_user, read_posts, wait_until

pytestmark = pytest.mark.timeout(300)
MB = 1024 * 1024
IMPORT_LOG = re.compile(r"import (\w+): (\d+) posts checked in ([\d.]+) s, (\d+) added and (\d+) skipped in "
                        r"([\d.]+) s \((\d+) posts/s overall\); peak RSS ([\d.]+) MB; parser (\w+)")


def import_file(user: Browserless, content: bytes) -> str:
    """Upload a file through the profile's form; the new task's id."""
    r = user.http.post(user.base_url + "/import_posts", data={"csrf_token": user.csrf()},
                       files={"file": ("posts.json", content, "application/json")}, allow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    task = user.tasks()[0]
    assert task["name"] == "import_posts", task
    return task["task_id"]


def uploads_left(stack: Stack) -> list[str]:
    """Uploads still waiting under EXPORT_DIR."""
    folder = stack.export_dir / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_export_then_import_reproduces_the_posts(stack: Stack):
    """Alice's export imported into a fresh account gives the same posts: bodies, microseconds, order."""
    alice = new_user(stack, posts=1200)
    for body in ('"Quoted" \\ back\\slash', "é 🙂 汉字 " * 10, "line\nbreak"):
        assert alice.post("/index", {"post": body}, allow_redirects=False).status_code == 302
    watcher = alice.socket()
    try:
        export_id = alice.export()
        assert watcher.terminal(export_id)["status"] == "finished"
    finally:
        watcher.close()
    exported = alice.get(f"/tasks/{export_id}/download").content

    bob = new_user(stack)
    watcher = bob.socket()
    try:
        task_id = import_file(bob, exported)
        end = watcher.terminal(task_id, timeout=120)
        assert (end["status"], end["progress"], end["message"]) == ("finished", 100, "1,203 posts imported."), end
        events = watcher.of(task_id)
        assert_well_ordered(events)
        # The writing half of the bar counts posts, as celery-progress names them.
        counted = [e for e in events if e.get("total") is not None]
        assert counted and all(e["total"] == 1203 and 0 < e["current"] <= 1203 for e in counted)
    finally:
        watcher.close()
    assert read_posts(stack.database_url, bob.username) == read_posts(stack.database_url, alice.username)
    assert len(json.loads(exported)["posts"]) == 1203

    again = import_file(bob, exported)
    end = wait_until(lambda: next((t for t in bob.tasks() if t["task_id"] == again and t["status"] != "queued"
                                   and t["status"] != "started"), None), 60, "the re-import to end")
    assert end["message"] == "0 posts imported. 1,203 posts skipped as already present.", end
    assert len(read_posts(stack.database_url, bob.username)) == 1203
    assert uploads_left(stack) == []


def test_bad_file_fails_in_the_worker(stack: Stack):
    """A 141-character body at posts[2]: the worker fails the task naming it, adds nothing, keeps no file."""
    carol = new_user(stack, posts=3)
    before = read_posts(stack.database_url, carol.username)
    good = {"body": "fine", "timestamp": "2026-01-31T12:00:00.000001Z"}
    content = json.dumps({"posts": [good, good, {**good, "body": "x" * 141}]}).encode()
    watcher = carol.socket()
    try:
        task_id = import_file(carol, content)
        end = watcher.terminal(task_id, timeout=60)
    finally:
        watcher.close()
    assert end["status"] == "failed"
    assert end["message"] == ("Entry posts[2]: the body has 141 characters; at most 140 are allowed. "
                              "Nothing was imported."), end
    assert read_posts(stack.database_url, carol.username) == before
    assert uploads_left(stack) == []


def big_file(size: int = 20 * MB) -> tuple[bytes, int]:
    """A posts.json of just under `size` bytes in the export's format, and its number of posts."""
    head, tail = b'{"posts": [', b"]}\n"
    entries, used, i = [], len(head) + len(tail), 0
    while True:
        entry = json.dumps({"body": f"Post number {i:07d} " + "é" * 5 + " with a 🙂 in it",
                            "timestamp": f"2025-{1 + i // 2_000_000:02d}-01T00:00:00.{i % 1_000_000:06d}Z"},
                           ensure_ascii=True).encode()
        if used + len(entry) + 1 > size:
            break
        entries.append(entry)
        used += len(entry) + 1
        i += 1
    return head + b",".join(entries) + tail, len(entries)


def test_20_mb_import_memory_and_rate(stack: Stack):
    """A 20 MB file: the work horse's peak memory stays under 100 MB; the rate is logged (posts/s)."""
    content, total = big_file()
    assert 19 * MB < len(content) <= 20 * MB
    dave = new_user(stack)
    watcher = dave.socket()
    try:
        task_id = import_file(dave, content)
        end = watcher.terminal(task_id, timeout=240)
    finally:
        watcher.close()
    assert (end["status"], end["message"]) == ("finished", f"{total:,} posts imported."), end
    log = wait_until(lambda: next((m for m in IMPORT_LOG.finditer(stack.workers[0].log_path.read_text())
                                   if m.group(1) == task_id), None), 10, "the import's summary in the worker log")
    peak_mb, rate = float(log.group(8)), int(log.group(7))
    parent_mb = _rss_mb(stack.workers[0].pid)  # what the work horse inherited at fork, for comparison
    print(f"\n20 MB import on {stack.kind}: {total:,} posts, checked in {log.group(3)} s, written in "
          f"{log.group(6)} s, {rate:,} posts/s overall, work horse peak RSS {peak_mb:.1f} MB "
          f"(the idle worker parent: {parent_mb:.1f} MB)")
    assert peak_mb < 100, log.group(0)
    assert log.group(9) == "yajl2_c"  # ijson's C backend: the pure-Python one is ~6x slower
    assert len(read_posts(stack.database_url, dave.username)) == total


def _rss_mb(pid: int) -> float:
    """A process's resident memory now (Linux)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_over_20_mb_refused_by_the_real_server(stack: Stack):
    """The eventlet server answers 413 from the Content-Length alone and makes no task."""
    erin = new_user(stack)
    r = erin.http.post(erin.base_url + "/import_posts", data={"csrf_token": erin.csrf()},
                       files={"file": ("posts.json", b" " * (21 * MB), "application/json")}, allow_redirects=False)
    assert r.status_code == 413, r.status_code
    assert "larger than 20 MB" in r.text
    assert erin.tasks() == []
    assert erin.get("/index").status_code == 200  # the session goes on


def test_cancel_a_running_import(stack: Stack):
    """Cancel while the file is being checked: "canceled", no post added, the upload removed, and a new
    import can start at once."""
    content, _ = big_file(8 * MB)
    frank = new_user(stack, posts=2)
    before = read_posts(stack.database_url, frank.username)
    watcher = frank.socket()
    try:
        task_id = import_file(frank, content)
        watcher.wait_for(lambda e: e["task_id"] == task_id and e["status"] == "started" and e["progress"] > 0,
                         60, "the import to make progress")
        r = frank.post(f"/tasks/{task_id}/cancel", allow_redirects=False)
        assert r.status_code == 303, r.status_code
        assert watcher.terminal(task_id)["status"] == "canceled"
    finally:
        watcher.close()
    wait_until(lambda: uploads_left(stack) == [], 10, "the canceled import's upload to be removed")
    assert read_posts(stack.database_url, frank.username) == before
    assert frank.tasks()[0]["retry_url"] == "/import_posts"  # "Try again" re-opens the form
    import_file(frank, json.dumps({"posts": []}).encode())
