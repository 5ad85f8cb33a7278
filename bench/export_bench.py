"""Export benchmark through the real path: a private stack (web server, RQ worker, Redis, SMTP),
a logged-in user with many posts, N exports launched by `POST /export_posts` while a Socket.IO
client listens. Reports latency to the first events, events per export, export time and the
work horse's peak memory; prints medians and writes bench/results/export.json.

    python -m bench.export_bench [--posts 100000] [--runs 5] [--db sqlite|postgresql] [--big-posts 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.common import PRODUCT_TIMERS
from tests.harness import ROOT, Browserless, RedisServer, SmtpServer, Stack, Watcher, migrate, new_database_url

RESULTS = ROOT / "bench" / "results" / "export.json"
MIB = 1024 * 1024


class TimedWatcher(Watcher):
    """A Socket.IO client that also notes when each `task_progress` event arrived."""

    def _on_event(self, data: dict) -> None:
        super()._on_event({**data, "received": time.monotonic()})


class CountingSmtp(SmtpServer):
    """A real SMTP server that only counts what it receives: parsing a 10 MB message in the harness's
    server would be timed as if it were the worker's email."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[list[str], int]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        """Note recipients and size, accept."""
        self.received.append((list(envelope.rcpt_tos), len(envelope.original_content or envelope.content)))
        return "250 Message accepted for delivery"


def children_of(pid: int) -> list[int]:
    """PIDs of a process's children, from /proc/<pid>/task/*/children (Linux 3.5+)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def proc_kib(path: str, *fields: str) -> dict[str, int]:
    """`Field: N kB` lines of a /proc file (status, smaps_rollup) as KiB; empty if the process is gone."""
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            out[name] = int(rest.split()[0])
    return out


class HorseMemory:
    """Samples the worker's forked children (the RQ work horses) until stopped.

    VmHWM is the kernel's own high-water mark of a process's RSS, so a sample taken any time after
    a peak still sees it; only a peak in the last interval before the horse exits can be missed.
    RSS counts the pages the horse still shares with the worker it was forked from, so the private
    bytes (smaps_rollup Private_Clean + Private_Dirty) are recorded too: what the job itself added.
    """

    def __init__(self, worker_pid: int, interval: float = 0.005) -> None:
        self.worker_pid = worker_pid
        self.interval = interval
        self.peak_hwm_kib = 0
        self.peak_private_kib = 0
        self.horses: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="horse-memory", daemon=True)

    def start(self) -> "HorseMemory":
        """Begin sampling in a background thread."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            for pid in children_of(self.worker_pid):
                self.horses.add(pid)
                hwm = proc_kib(f"/proc/{pid}/status", "VmHWM").get("VmHWM", 0)
                self.peak_hwm_kib = max(self.peak_hwm_kib, hwm)
                if rounds % 10 == 0:  # smaps_rollup walks every mapping: ten times rarer
                    smaps = proc_kib(f"/proc/{pid}/smaps_rollup", "Private_Clean", "Private_Dirty")
                    self.peak_private_kib = max(self.peak_private_kib, sum(smaps.values()))
            rounds += 1
            self._stop.wait(self.interval)

    def stop_after_horses_exit(self, timeout: float = 10) -> None:
        """Keep sampling until the worker has no child left (the horse's last moments count), then stop."""
        deadline = time.monotonic() + timeout
        while children_of(self.worker_pid) and time.monotonic() < deadline:
            time.sleep(self.interval)
        self._stop.set()
        self._thread.join(5)


def rss_mib(pid: int) -> float:
    """Current RSS of a process, MiB."""
    return proc_kib(f"/proc/{pid}/status", "VmRSS").get("VmRSS", 0) / 1024


def seed_posts(stack: Stack, username: str, count: int) -> float:
    """Add posts through `flask seed-posts`; returns the seconds it took."""
    env = dict(os.environ, DATABASE_URL=stack.database_url, FLASK_APP="app:create_app",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "flask", "seed-posts", username, str(count)], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return time.monotonic() - began


def download_size(user: Browserless, url: str) -> int:
    """Bytes the export's download link serves (streamed, not kept)."""
    with user.http.get(user.base_url + url, stream=True, timeout=60) as response:
        response.raise_for_status()
        return sum(len(chunk) for chunk in response.iter_content(1 << 20))


def run_export(stack: Stack, user: Browserless, watcher: TimedWatcher, timeout: float) -> dict[str, Any]:
    """Launch one export as the profile's button does and measure it from the client's side."""
    worker_pid = stack.workers[0].pid
    token = user.csrf()  # fetched first: the clock starts at the POST itself
    memory = HorseMemory(worker_pid).start()
    posted = time.monotonic()
    response = user.http.post(f"{stack.url}/export_posts", data={"csrf_token": token}, allow_redirects=False)
    answered = time.monotonic()
    assert response.status_code == 303, response.status_code
    task_id = user.tasks()[0]["task_id"]
    try:
        end = watcher.terminal(task_id, timeout)
    except AssertionError:
        memory.stop_after_horses_exit(0)
        return {"task_id": task_id, "status": "timed out", "timeout_s": timeout}
    memory.stop_after_horses_exit()
    events = watcher.of(task_id)
    first = events[0]["received"]
    started = next((e["received"] for e in events if e["status"] == "started"), None)
    return {
        "task_id": task_id,
        "status": end["status"],
        "message": end["message"],
        "post_response_ms": round((answered - posted) * 1000, 1),
        "post_to_first_event_ms": round((first - posted) * 1000, 1),
        "first_event_status": events[0]["status"],
        "post_to_started_ms": round((started - posted) * 1000, 1) if started else None,
        "events": len(events),
        "export_s": round(end["received"] - first, 3),
        "post_to_end_s": round(end["received"] - posted, 3),
        "file_mib": round(download_size(user, end["download_url"]) / MIB, 2) if end["download_url"] else None,
        "horse_peak_rss_mib": round(memory.peak_hwm_kib / 1024, 1),
        "horse_peak_private_mib": round(memory.peak_private_kib / 1024, 1),
        "worker_rss_mib": round(rss_mib(worker_pid), 1),
        # [ms since the POST, progress, status] per event: where the time goes (writing vs. emailing)
        "timeline": [[round((e["received"] - posted) * 1000), e["progress"], e["status"]] for e in events],
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median of each numeric figure over the runs that finished."""
    done = [r for r in runs if r["status"] == "finished"]
    keys = ["post_response_ms", "post_to_first_event_ms", "post_to_started_ms", "events", "export_s",
            "post_to_end_s", "horse_peak_rss_mib", "horse_peak_private_mib", "worker_rss_mib"]
    return {k: round(statistics.median(r[k] for r in done), 3) for k in keys
            if done and all(r[k] is not None for r in done)}


def new_user(stack: Stack, posts: int) -> tuple[Browserless, float]:
    """A registered, logged-in user with `posts` posts, and the seconds seeding took."""
    user = Browserless(stack.url).register().login()
    return user, seed_posts(stack, user.username, posts)


def bench(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    """The runs of one deployment: N exports of --posts, then one of --big-posts."""
    user, seeded = new_user(stack, args.posts)
    print(f"seeded {args.posts:,} posts in {seeded:.1f} s; worker pid {stack.workers[0].pid}", flush=True)
    watcher = TimedWatcher(stack.url, user.cookie_header())
    runs = []
    try:
        for n in range(1, args.runs + 1):
            runs.append(run_export(stack, user, watcher, args.timeout))
            print(f"run {n}: {summary(runs[-1])}", flush=True)
    finally:
        watcher.close()
    big = None
    if args.big_posts:
        big_user, big_seeded = new_user(stack, args.big_posts)
        print(f"seeded {args.big_posts:,} posts in {big_seeded:.1f} s", flush=True)
        big_watcher = TimedWatcher(stack.url, big_user.cookie_header())
        try:
            big = {"posts": args.big_posts, "seed_s": round(big_seeded, 1),
                   **run_export(stack, big_user, big_watcher, args.big_timeout)}
        finally:
            big_watcher.close()
        print(f"big run ({args.big_posts:,} posts): {summary(big)}", flush=True)
    return {"seed_s": round(seeded, 1), "runs": runs, "median": medians(runs), "big": big}


def summary(run: dict[str, Any]) -> str:
    """One line about a run."""
    if run["status"] != "finished":
        return f"{run['status']} ({run.get('message') or run.get('timeout_s')})"
    return (f"first event {run['post_to_first_event_ms']:.0f} ms ({run['first_event_status']}), started "
            f"{run['post_to_started_ms']:.0f} ms, {run['events']} events, export {run['export_s']:.2f} s, "
            f"file {run['file_mib']} MiB, horse peak RSS {run['horse_peak_rss_mib']} MiB "
            f"(private {run['horse_peak_private_mib']} MiB)")


@contextmanager
def deployment(kind: str, workdir: Path) -> Iterator[Stack]:
    """Private Redis, SMTP server, one web server and one worker on a fresh, migrated database;
    afterwards every process it started is stopped, by PID, and the database dropped."""
    url, drop = new_database_url(kind, workdir)
    redis_server = smtp = stack = None
    try:
        migrate(url)
        redis_server = RedisServer(workdir / "redis").start()
        smtp = CountingSmtp().start()
        stack = Stack(workdir, url, redis_server, smtp, extra_env=dict(PRODUCT_TIMERS))
        stack.start_web()
        stack.start_worker()
        yield stack
    finally:
        for stop in (stack and stack.stop, smtp and smtp.stop, redis_server and redis_server.stop, drop):
            if stop:
                stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000, help="posts of the benchmark user (default 100,000)")
    parser.add_argument("--runs", type=int, default=5, help="exports to run (default 5)")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one export may take")
    parser.add_argument("--big-posts", type=int, default=1_000_000, help="one extra run of this many posts (0: none)")
    parser.add_argument("--big-timeout", type=float, default=120, help="seconds the big run may take")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the medians, write the JSON report."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="export-bench-"))
    try:
        with deployment(args.db, workdir) as stack:
            report = bench(args, stack)
    except BaseException:
        print(f"benchmark failed; logs and database kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir)  # a million posts and their exports: hundreds of MB
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
              **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nmedians over {args.runs} exports of {args.posts:,} posts ({args.db}):")
    for key, value in report["median"].items():
        print(f"  {key:26} {value}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
