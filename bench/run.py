"""`make bench`: every benchmark of issue 10, each run ≥ 3 times, one RESULT line per figure.

    python -m bench.run [--smoke] [--only exports,pages,push,push_pages,storm,held,many_exports,cluster,poll,eta]
                        [--runs 3]

Each benchmark starts the private deployment it needs (tests.harness: Redis, SMTP, `python run.py`,
`python -m worker`), clients run in processes of their own. Prints
`RESULT <name> <median> <unit> target <target> PASS|FAIL` per figure and writes the same as JSON
to bench/results/<UTC time>.json and bench/results/latest.json. BENCH_SCALE (default 1; the smoke
uses its own small sizes) multiplies socket counts and post counts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from tests.harness import ROOT

RESULTS = ROOT / "bench" / "results"


@dataclass
class Sizes:
    """How big each benchmark is: the issue's numbers, or the smoke's."""

    posts: int
    big_posts: int
    push_idle: tuple[int, ...]
    push_seconds: float
    storm: int
    held: int
    held_seconds: float
    page_seconds: float
    concurrency: int
    small_exports: int
    push_pages_seconds: float
    cluster_events: int
    cluster_users_per_web: int
    poll_seconds: float
    poll_hold_seconds: float
    poll_max_sockets: int


FULL = Sizes(posts=100_000, big_posts=1_000_000, push_idle=(1_000, 10_000), push_seconds=60, storm=5_000,
             held=10_000, held_seconds=55, page_seconds=10, concurrency=200, small_exports=1_000,
             push_pages_seconds=30, cluster_events=30_000, cluster_users_per_web=50, poll_seconds=10,
             poll_hold_seconds=30, poll_max_sockets=10_000)
SMOKE = Sizes(posts=500, big_posts=2_000, push_idle=(20,), push_seconds=2, storm=40, held=40, held_seconds=1,
              page_seconds=1, concurrency=20, small_exports=10, push_pages_seconds=2, cluster_events=500,
              cluster_users_per_web=5, poll_seconds=1, poll_hold_seconds=1, poll_max_sockets=40)


def scaled(sizes: Sizes, factor: float) -> Sizes:
    """Sizes with socket and post counts multiplied (BENCH_SCALE)."""
    if factor == 1:
        return sizes
    n = lambda v: max(1, int(v * factor))  # noqa: E731
    return Sizes(n(sizes.posts), n(sizes.big_posts), tuple(n(v) for v in sizes.push_idle), sizes.push_seconds,
                 n(sizes.storm), n(sizes.held), sizes.held_seconds, sizes.page_seconds, sizes.concurrency,
                 n(sizes.small_exports), sizes.push_pages_seconds, n(sizes.cluster_events),
                 sizes.cluster_users_per_web, sizes.poll_seconds, sizes.poll_hold_seconds, n(sizes.poll_max_sockets))


def median_of(runs: list[float]) -> float:
    """The median of a figure's runs; NaN if any run measured nothing, never a median of the others."""
    return statistics.median(runs) if runs and not any(v != v for v in runs) else float("nan")


class Report:
    """Collects figures: name, runs, unit, target; prints RESULT lines; writes JSON."""

    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.figures: list[dict[str, Any]] = []
        self.context: list[dict[str, Any]] = []  # figures without a target that explain others

    def add(self, name: str, runs: list[float], unit: str, target: str, note: str = "") -> None:
        """One figure: the median of its runs against a target like '<=2' or '>=1500' or '==0'."""
        value = median_of(runs)
        op, bound = target[:2], float(target[2:])
        ok = {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]
        self.figures.append({"name": name, "median": value, "unit": unit, "target": target,
                             "verdict": "PASS" if ok else "FAIL", "runs": runs, "note": note})
        print(f"RESULT {name} {value:.4g} {unit} target {target} {'PASS' if ok else 'FAIL'}", flush=True)

    def info(self, name: str, runs: list[float], unit: str, note: str) -> None:
        """A figure with no target of its own that explains a FAIL (a floor): printed as an INFO line."""
        value = median_of(runs)
        self.context.append({"name": name, "median": value, "unit": unit, "runs": runs, "note": note})
        print(f"INFO {name} {value:.4g} {unit}", flush=True)

    def write(self, sizes: Sizes) -> Path:
        """bench/results/<time>.json and latest.json (smoke: smoke-latest.json)."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        doc = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "smoke": self.smoke,
               "sizes": vars(sizes), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                 "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
               "figures": self.figures, "context": self.context}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"{'smoke-' if self.smoke else ''}{stamp}.json"
        text = json.dumps(doc, indent=2) + "\n"
        path.write_text(text)
        (RESULTS / ("smoke-latest.json" if self.smoke else "latest.json")).write_text(text)
        return path


def bench_exports(report: Report, sizes: Sizes, runs: int) -> None:
    """6: exports of `posts` and `big_posts` on SQLite and PostgreSQL (seeded without ANALYZE)."""
    import tempfile

    from bench import export_bench as eb
    from tests.harness import Browserless, seed

    for db in ("sqlite", "postgresql"):
        with eb.deployment(db, Path(tempfile.mkdtemp(prefix=f"bench-export-{db}-"))) as stack:
            for label, posts, limit in (("small", sizes.posts, 1.0), ("big", sizes.big_posts, 2.0 if db == "sqlite" else 3.0)):
                user = Browserless(stack.url).register().login()
                if label == "small" and db == "postgresql":  # `flask seed-posts`: COPY, then ANALYZE
                    report.add("seed_posts_postgresql_rate", [seed_rate(stack, user.username, posts)], "posts/s",
                               ">=200000", f"{posts} posts, the rate `flask seed-posts` reports (COPY + ANALYZE)")
                else:  # the bulk path without ANALYZE: the planner knows nothing of these rows
                    seed(stack.database_url, user.username, posts)
                watcher = eb.TimedWatcher(stack.url, user.cookie_header())
                try:
                    done = [eb.run_export(stack, user, watcher, 300) for _ in range(runs)]
                finally:
                    watcher.close()
                done = [r for r in done if r["status"] == "finished"]
                name = f"export_{db}_{posts}"
                report.add(f"{name}_post_to_terminal", [r["post_to_end_s"] for r in done], "s", f"<={limit}")
                report.add(f"{name}_post_to_started", [r["post_to_started_ms"] for r in done], "ms", "<=500")
                report.add(f"{name}_events", [r["events"] for r in done], "events", "<=120")
                report.add(f"{name}_horse_peak_rss", [r["horse_peak_rss_mib"] for r in done], "MiB", "<=80")


def seed_rate(stack: Any, username: str, posts: int) -> float:
    """Posts/s as `flask seed-posts` itself reports it (its insert and ANALYZE, not Python's start-up)."""
    import re
    import subprocess

    env = dict(os.environ, DATABASE_URL=stack.database_url, FLASK_APP="app:create_app",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    out = subprocess.run([sys.executable, "-m", "flask", "seed-posts", username, str(posts)], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"\(([\d,]+) posts/s\)", out).group(1).replace(",", ""))


def bench_pages(report: Report, sizes: Sizes, runs: int) -> None:
    """5: pages at `concurrency` concurrent, small database, then with `big_posts` posts."""
    from bench.common import deployment, make_users
    from bench.pages_bench import big_user, deep_cursor, load
    from tests.harness import seed

    with deployment("sqlite") as stack:
        users = make_users(stack, 3, "p")
        username = f"p0_{os.getpid()}"
        seed(stack.database_url, username, 60)
        cookie = users[0][1]
        for label, path in (("home", "/index"), ("explore", "/explore"), ("profile", f"/user/{username}"),
                            ("tasks", "/tasks")):
            got = [load(stack, cookie, path, sizes.concurrency, sizes.page_seconds) for _ in range(runs)]
            report.add(f"pages_small_{label}_rps", [g["rps"] for g in got], "req/s", ">=1000")
            report.add(f"pages_small_{label}_5xx", [g["5xx"] for g in got], "responses", "==0")
        big_user(stack, username, sizes.big_posts)
        deep = deep_cursor(stack, username, sizes.big_posts // 2)
        for label, path in (("profile", f"/user/{username}"), ("explore", "/explore"),
                            ("deep_page", f"/user/{username}?before={deep}")):
            got = [load(stack, cookie, path, sizes.concurrency, sizes.page_seconds) for _ in range(runs)]
            report.add(f"pages_big_{label}_rps", [g["rps"] for g in got], "req/s", ">=500",
                       f"{sizes.big_posts} posts")
            report.add(f"pages_big_{label}_5xx", [g["5xx"] for g in got], "responses", "==0")


def bench_push(report: Report, sizes: Sizes, runs: int) -> None:
    """1: push latency, 100 events/s, with N idle authenticated sockets."""
    from bench.common import deployment
    from bench.sockets_bench import push_latency

    for idle in sizes.push_idle:
        with deployment("sqlite") as stack:
            got = [push_latency(stack, idle, sizes.push_seconds, f"q{idle}_{i}_") for i in range(runs)]
        report.add(f"push_{idle}_idle_p50", [g["p50_ms"] for g in got], "ms", "<=5")
        report.add(f"push_{idle}_idle_p99", [g["p99_ms"] for g in got], "ms", "<=5")
        report.add(f"push_{idle}_idle_max", [g["max_ms"] for g in got], "ms", "<=50")
        report.add(f"push_{idle}_idle_lost", [g["lost"] for g in got], "events", "==0")


def bench_storm(report: Report, sizes: Sizes, runs: int) -> None:
    """3: N sockets connect at once, then leave at once, while one user receives 100 events/s."""
    from bench.common import deployment
    from bench.sockets_bench import connect_storm

    with deployment("sqlite") as stack:
        got = [connect_storm(stack, sizes.storm, f"s{i}_") for i in range(runs)]
    report.add(f"storm_{sizes.storm}_connect_p99", [g["connect_p99_ms"] for g in got], "ms", "<=50")
    report.add(f"storm_{sizes.storm}_disconnect_max", [g["disconnect_max_ms"] for g in got], "ms", "<=100")
    report.add(f"storm_{sizes.storm}_connects_per_s", [g["connects_per_s"] for g in got], "conn/s", ">=1500")
    report.add(f"storm_{sizes.storm}_connect_cpu", [g["connect_cpu_ms"] for g in got], "ms/conn", "<=1")
    report.add(f"storm_{sizes.storm}_lost", [g["lost"] for g in got], "events", "==0")


def bench_held(report: Report, sizes: Sizes, runs: int) -> None:
    """4: N idle sockets held for ≥ 2 ping intervals: dropped, KiB per socket."""
    from bench.common import deployment
    from bench.sockets_bench import sockets_held

    got = []
    for i in range(runs):
        with deployment("sqlite") as stack:  # a fresh process each time: freed memory stays with a process
            got.append(sockets_held(stack, sizes.held, sizes.held_seconds, f"h{i}_"))
    report.add(f"held_{sizes.held}_dropped", [g["dropped"] + sizes.held - g["held"] for g in got], "sockets", "==0")
    report.add(f"held_{sizes.held}_kib_per_socket", [g["kib_per_socket"] for g in got], "KiB", "<=64")


def bench_many_exports(report: Report, sizes: Sizes, runs: int) -> None:
    """7: N exports of 100 posts queued at once with 2 workers: all end, every terminal event delivered once."""
    from bench.common import deployment
    from bench.sockets_bench import many_exports

    with deployment("sqlite", workers=2) as stack:
        got = [many_exports(stack, sizes.small_exports, f"m{i}_") for i in range(runs)]
    report.add(f"many_exports_{sizes.small_exports}_jobs_per_s", [g["jobs_per_s"] for g in got], "jobs/s", ">=20")
    report.add(f"many_exports_{sizes.small_exports}_missing_terminal", [g["missing"] for g in got], "events", "==0")
    report.add(f"many_exports_{sizes.small_exports}_misrouted", [g["misrouted"] for g in got], "events", "==0")


def bench_push_pages(report: Report, sizes: Sizes, runs: int) -> None:
    """2: push latency to one user while `concurrency` clients load pages, a `big_posts` profile among them."""
    from bench.common import deployment, make_users
    from bench.sockets_bench import push_under_page_load
    from tests.harness import seed

    with deployment("sqlite") as stack:
        users = make_users(stack, 1, "pp")
        big = f"pp0_{os.getpid()}"
        seed(stack.database_url, big, sizes.big_posts)
        got = [push_under_page_load(stack, big, users[0][1], sizes.concurrency, sizes.push_pages_seconds, f"pq{i}_")
               for i in range(runs)]
    note = f"{sizes.concurrency} clients loading home, /explore, /tasks and a {sizes.big_posts}-post profile"
    report.add("push_pages_p50", [g["p50_ms"] for g in got], "ms", "<=5", note)
    report.add("push_pages_p99", [g["p99_ms"] for g in got], "ms", "<=10", note)
    report.add("push_pages_max", [g["max_ms"] for g in got], "ms", "<=50", note)
    report.add("push_pages_lost", [g["lost"] for g in got], "events", "==0", note)
    report.add("push_pages_rps", [g["pages_rps"] for g in got], "req/s", ">=500", note)
    report.add("push_pages_5xx", [g["pages_5xx"] for g in got], "responses", "==0", note)


def bench_cluster(report: Report, sizes: Sizes, runs: int) -> None:
    """8: events/s that 1 and then 2 web processes relay to their users (every process gets every event)."""
    from bench.common import deployment
    from bench.sockets_bench import relay_rate

    rates = {}
    for webs in (1, 2):
        with deployment("sqlite", webs=webs) as stack:
            got = [relay_rate(stack, sizes.cluster_users_per_web, sizes.cluster_events, f"c{webs}{i}_")
                   for i in range(runs)]
        rates[webs] = [g["events_per_s"] for g in got]
        report.add(f"cluster_{webs}_web_events_per_s", rates[webs], "events/s", ">=2000",
                   f"{sizes.cluster_events} events to {sizes.cluster_users_per_web * webs} users, one publisher "
                   "sending 100 PUBLISHes per round trip; from its first publish to the last arrival; "
                   f"web CPU s per run: {[g['web_cpu_s'] for g in got]}")
        report.add(f"cluster_{webs}_web_lost", [g["lost"] for g in got], "events", "==0")
    # Each process receives every event and drops those for users it holds no socket of (before
    # python-socketio builds their packets): the baseline for routing events only to the servers
    # that hold a user, which would spare them the receiving and decoding too.
    report.add("cluster_2_to_1_ratio", [statistics.median(rates[2]) / statistics.median(rates[1])], "x", ">=1.5",
               "2 web processes against 1; the machine has 2 cores for servers, clients and publisher")


def bench_poll(report: Report, sizes: Sizes, runs: int) -> None:
    """9: polling /api/tasks/<id> against idle sockets, in CPU per client."""
    from bench.common import deployment
    from bench.poll_bench import poll_vs_push

    with deployment("sqlite") as stack:
        got = [poll_vs_push(stack, sizes.poll_seconds, sizes.poll_hold_seconds, sizes.poll_max_sockets, f"v{i}_")
               for i in range(runs)]
    report.add("poll_task_rps_full_cpu", [g["rps_full_cpu"] for g in got], "req/s", ">=1000",
               "/api/tasks/<id> answered per CPU-second of the web process, 50 concurrent")
    report.info("poll_floor_anonymous_rps_full_cpu", [g["floor_rps_full_cpu"] for g in got], "req/s",
                "the same URL answered 401 to clients without a session, per CPU-second: the stack's cost of "
                "any request before the app's own work, the ceiling of poll_task_rps_full_cpu")
    report.add("poll_5xx", [g["5xx"] for g in got], "responses", "==0")
    report.add("poll_same_sockets_idle_cpu", [g["idle_cpu_percent"] for g in got], "%", "<=10",
               f"that many idle sockets (at most {sizes.poll_max_sockets}), held {sizes.poll_hold_seconds} s")
    report.add("poll_to_push_cost_ratio", [g["poll_to_push_cost"] for g in got], "x", ">=10",
               "CPU of a client polling once a second / CPU of a client holding a socket")


def bench_eta(report: Report, sizes: Sizes, runs: int) -> None:
    """Issue 12: the time left the bar shows at half-way, against the time the export then took."""
    from bench.eta_bench import measure

    posts = sizes.big_posts * 2  # the 2,000,000 (the smoke: 4,000)
    got = [measure(posts, "sqlite") for _ in range(runs)]
    half = [next((m for m in g["marks"] if m["mark"] == 50), {}) for g in got]
    # The estimate before its rounding to whole seconds (the contract's eta_seconds): on a fast machine
    # half of 2M posts is ~1.3 s from the end, where the shown "1 s" is 23 % short only because it is
    # a whole number, and 1.53 s shown as "2" against 1.46 s real would count +37 % (both in the note).
    report.add(f"eta_{posts}_error_at_half", [abs(h["error_unrounded"]) * 100 if h.get("eta_s") is not None
                                              else float("nan") for h in half], "%", "<=25",
               "|estimate - real time left| / real time left, the estimate (posts left / rate) before its "
               f"rounding to whole seconds, first event past 50 % with an ETA; runs: {half}")


BENCHES: dict[str, Callable[[Report, Sizes, int], None]] = {
    "exports": bench_exports, "pages": bench_pages, "push": bench_push, "push_pages": bench_push_pages,
    "storm": bench_storm, "held": bench_held, "many_exports": bench_many_exports, "cluster": bench_cluster,
    "poll": bench_poll, "eta": bench_eta,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; 0 even when a target is missed (the lines say so)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, ~30 s per benchmark")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ",".join(BENCHES))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = scaled(SMOKE if args.smoke else FULL, float(os.environ.get("BENCH_SCALE", "1")))
    report = Report(args.smoke)
    for name in args.only.split(","):
        began = time.monotonic()
        BENCHES[name](report, sizes, args.runs)
        print(f"# {name}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    print(f"written to {report.write(sizes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
