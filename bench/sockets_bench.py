"""Socket benchmarks: push latency with N idle sockets (1), connect/disconnect storm (3), sockets per process (4)."""
from __future__ import annotations

import time
from typing import Any

from bench.common import Clients, Publisher, cookies_file, cpu_seconds, make_users, median, percentile, process_kib
from tests.harness import Stack

SOCKETS_PER_USER = 10


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
        lat = [ms for _, ms in me.release()["latencies_ms"]]
        report = crowd.release()
    finally:
        crowd.kill()
        me.kill()
    return {"p50_ms": median(lat), "p99_ms": percentile(lat, 99), "max_ms": max(lat, default=float("nan")),
            "held": held, "dropped": report["dropped"], "lost": publisher.sent - len(lat)}


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
    during = [ms for at, ms in lat if t0 <= at <= t1 + 0.5]
    leaving = [ms for at, ms in lat if t2 <= at <= t3]
    return {"connect_p99_ms": percentile(during, 99), "connect_max_ms": max(during, default=float("nan")),
            "disconnect_max_ms": max(leaving, default=float("nan")), "connected": connected,
            "connects_per_s": connected / max(t1 - t0, 1e-9), "connect_cpu_ms": (cpu1 - cpu0) * 1000 / max(connected, 1),
            "lost": publisher.sent - len(lat)}


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
