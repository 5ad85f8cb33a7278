"""Socket benchmarks: push latency with N idle sockets (1), connect/disconnect storm (3), sockets per process (4)."""
from __future__ import annotations

import time
from typing import Any

from bench.common import Clients, Publisher, cookies_file, cpu_seconds, make_users, median, percentile, process_kib
from tests.harness import Stack

SOCKETS_PER_USER = 10


def lost(received: list[list[float]]) -> int:
    """Events missing between the first and the last received (the subscription warms up first)."""
    seqs = {int(seq) for _, _, seq in received}
    return (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0


def users_for(stack: Stack, sockets: int, prefix: str) -> tuple[tuple[int, str], Any]:
    """A measured user and a cookie file for `sockets` idle sockets of other users."""
    users = make_users(stack, 1 + max(1, sockets // SOCKETS_PER_USER), prefix)
    return users[0], cookies_file(stack, users[1:], f"{prefix}.cookies")


def push_latency(stack: Stack, idle: int, seconds: float, prefix: str) -> dict[str, float]:
    """Latency of 100 events/s to one user while `idle` other sockets are connected."""
    measured, idle_cookies = users_for(stack, idle, prefix)
    crowd = Clients(stack, idle_cookies, idle)
    me = Clients(stack, cookies_file(stack, [measured], f"{prefix}.me"), 1, measure=True)
    try:
        held = crowd.wait_connected()
        me.wait_connected()
        publisher = Publisher(stack.redis.url, measured[0]).start()
        time.sleep(seconds)
        publisher.stop()
        time.sleep(0.5)
        got = me.release()["latencies_ms"]
        lat = [ms for _, ms, _ in got]
        report = crowd.release()
    finally:
        crowd.kill()
        me.kill()
    return {"p50_ms": median(lat), "p99_ms": percentile(lat, 99), "max_ms": max(lat, default=float("nan")),
            "held": held, "dropped": report["dropped"], "lost": lost(got)}


def connect_storm(stack: Stack, storm: int, prefix: str) -> dict[str, float]:
    """`storm` sockets connect at once and later leave at once while a measured user gets 100 events/s."""
    measured, storm_cookies = users_for(stack, storm, prefix)
    me = Clients(stack, cookies_file(stack, [measured], f"{prefix}.me"), 1, measure=True)
    me.wait_connected()
    publisher = Publisher(stack.redis.url, measured[0]).start()
    web = stack.webs[0].pid
    try:
        time.sleep(1)
        cpu0, t0 = cpu_seconds(web), time.monotonic()
        crowd = Clients(stack, storm_cookies, storm)
        connected = crowd.wait_connected()
        t1 = time.monotonic()
        cpu1 = cpu_seconds(web)
        time.sleep(1)
        t2 = time.monotonic()
        crowd.release()
        time.sleep(3)  # the server absorbs the disconnects
        t3 = time.monotonic()
        publisher.stop()
        time.sleep(0.5)
        lat = me.release()["latencies_ms"]
    finally:
        me.kill()
        publisher.stop()
    during = [ms for at, ms, _ in lat if t0 <= at <= t1 + 0.5]
    leaving = [ms for at, ms, _ in lat if t2 <= at <= t3]
    return {"connect_p99_ms": percentile(during, 99), "connect_max_ms": max(during, default=float("nan")),
            "disconnect_max_ms": max(leaving, default=float("nan")), "connected": connected,
            "connects_per_s": connected / max(t1 - t0, 1e-9), "connect_cpu_ms": (cpu1 - cpu0) * 1000 / max(connected, 1),
            "lost": lost(lat)}


def sockets_held(stack: Stack, count: int, seconds: float, prefix: str) -> dict[str, float]:
    """Hold `count` idle sockets for `seconds` (≥ 2 ping intervals in the full run): dropped, KiB each."""
    _, cookies = users_for(stack, count, prefix)
    web = stack.webs[0].pid
    before = process_kib(web)
    crowd = Clients(stack, cookies, count)
    try:
        held = crowd.wait_connected()
        time.sleep(seconds)
        rss = process_kib(web)
        report = crowd.release()
    finally:
        crowd.kill()
    return {"held": held, "dropped": report["dropped"], "kib_per_socket": (rss - before) / max(held, 1)}


def many_exports(stack: Stack, count: int, prefix: str) -> dict[str, float]:
    """`count` users each launch an export of 100 posts at once; every terminal event must reach its owner once."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    import sqlalchemy as sa

    from config import normalize_database_url
    from tests.harness import CSRF_META, seed

    users = make_users(stack, count, prefix)
    for i in range(count):
        seed(stack.database_url, f"{prefix}{i}_{__import__('os').getpid()}", 100)
    crowd = Clients(stack, cookies_file(stack, users, f"{prefix}.cookies"), count, record=True)
    crowd.wait_connected()

    def open_page(cookie: str) -> tuple[str, str]:
        # The page that hands out the CSRF token also stores its secret in the session cookie it
        # sends back (a login starts with an empty session): post with that newer cookie.
        page = requests.get(stack.url + "/index", headers={"Cookie": cookie})
        token = CSRF_META.search(page.text).group(1)
        jar = dict(part.partition("=")[::2] for part in cookie.split("; "))
        jar.update(page.cookies.get_dict())
        return "; ".join(f"{name}={value}" for name, value in jar.items()), token

    def launch(page: tuple[str, str]) -> int:
        cookie, token = page
        return requests.post(stack.url + "/export_posts", data={"csrf_token": token}, headers={"Cookie": cookie},
                             allow_redirects=False).status_code

    engine = sa.create_engine(normalize_database_url(stack.database_url))
    ids = [uid for uid, _ in users]
    # Every user has the page open before the clock starts, as the "queued at once" means:
    # rendering the page the button is on (py-spy: about as much of the web's CPU as the launch
    # itself) is not part of the workers' throughput. Timed with it: 19.9 jobs/s on 12-07d.
    with ThreadPoolExecutor(16) as pool:
        pages = list(pool.map(open_page, [c for _, c in users]))
    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(launch, pages))
    if set(codes) - {302, 303}:  # a refused launch would otherwise be waited for until the deadline
        crowd.kill()
        raise RuntimeError(f"exports were refused: HTTP {sorted(set(codes))}")
    owner: dict[str, int] = {}
    deadline = time.monotonic() + 600
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(sa.text("SELECT id, user_id, status FROM task WHERE user_id IN :ids")
                                .bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).all()
            conn.rollback()
            if len(rows) >= count and all(r.status in ("finished", "failed", "canceled") for r in rows):
                break
            time.sleep(0.2)
    elapsed = time.monotonic() - began
    engine.dispose()
    owner = {r.id: r.user_id for r in rows}
    time.sleep(1)  # the last terminal events are on their way
    records = crowd.release()["records"]
    crowd.kill()
    terminal: dict[str, int] = {}
    misrouted = 0
    for index, task_id, status in records:
        if owner.get(task_id) != users[index][0]:
            misrouted += 1
        elif status in ("finished", "failed", "canceled"):
            terminal[task_id] = terminal.get(task_id, 0) + 1
    missing = sum(1 for t in owner if terminal.get(t) != 1) + (count - len(owner))
    return {"jobs_per_s": len(owner) / elapsed, "missing": missing, "misrouted": misrouted,
            "launch_codes": sorted(set(codes))}


def push_under_page_load(stack: Stack, big_username: str, pages_cookie: str, concurrency: int, seconds: float,
                         prefix: str) -> dict[str, float]:
    """2: latency of 100 events/s to one user while `concurrency` clients load pages, a big profile among them."""
    from bench.pages_bench import load

    (measured,) = make_users(stack, 1, prefix)
    me = Clients(stack, cookies_file(stack, [measured], f"{prefix}.me"), 1, measure=True)
    try:
        me.wait_connected()
        publisher = Publisher(stack.redis.url, measured[0]).start()
        time.sleep(1)  # latencies from before the load are not counted (below), but the subscription warms up
        began = time.monotonic()
        loaded = load(stack, pages_cookie, f"/index,/explore,/user/{big_username},/tasks", concurrency, seconds)
        ended = time.monotonic()
        publisher.stop()
        time.sleep(0.5)
        got = me.release()["latencies_ms"]
    finally:
        me.kill()
    lat = [ms for at, ms, _ in got if began <= at <= ended]
    return {"p50_ms": median(lat), "p99_ms": percentile(lat, 99), "max_ms": max(lat, default=float("nan")),
            "lost": lost(got), "pages_rps": loaded["rps"],
            "pages_5xx": loaded["5xx"]}


def relay_rate(stack: Stack, users_per_web: int, events: int, prefix: str) -> dict[str, float]:
    """8: events/s the stack's web processes relay together: one socket per user, the users spread over the
    processes, `events` published round-robin to their rooms as fast as one publisher can."""
    from bench.common import blast

    webs = len(stack.ports)
    users = make_users(stack, users_per_web * webs, prefix)
    groups = [users[i::webs] for i in range(webs)]
    crowds = [Clients(stack, cookies_file(stack, group, f"{prefix}{i}.cookies"), len(group), port=port, count=True)
              for i, (group, port) in enumerate(zip(groups, stack.ports))]
    try:
        connected = sum(c.wait_connected() for c in crowds)
        time.sleep(1)
        cpu0 = {w.pid: cpu_seconds(w.pid) for w in stack.webs}
        began = time.monotonic()  # the clients' clock too: CLOCK_MONOTONIC is the machine's
        published_s = blast(stack.redis.url, [uid for uid, _ in users], events)
        # Every event goes to a room with one socket; wait until all arrived or nothing moves any more.
        deadline, last_cpu = time.monotonic() + 120, -1.0
        while time.monotonic() < deadline:
            time.sleep(1)
            now_cpu = sum(cpu_seconds(w.pid) for w in stack.webs)
            if now_cpu - last_cpu < 0.05:  # the web processes are idle again: the relay is over
                break
            last_cpu = now_cpu
        cpu = {pid: cpu_seconds(pid) - before for pid, before in cpu0.items()}
        reports = [c.release()["counted"] for c in crowds]
    finally:
        for c in crowds:
            c.kill()
    received = sum(r["events"] for r in reports)
    # From the first publish to the last arrival: the clients read late when the machine is busy, so
    # their own first-to-last window would count a burst out of their socket buffers, not the relay.
    last = max((r["last_at"] for r in reports if r["last_at"]), default=began)
    return {"events_per_s": received / max(last - began, 1e-9), "lost": events - received, "connected": connected,
            "published_per_s": events / published_s, "web_cpu_s": sorted(cpu.values())}
