"""Polling against push (9), for the README: what one web process spends on a client that polls
`/api/tasks/<id>` once a second, against what it spends on a client holding an idle socket."""
from __future__ import annotations

import time
from typing import Any

from bench.common import Clients, cookies_file, cpu_seconds, make_users
from bench.pages_bench import load
from tests.harness import Browserless, Stack, seed


def a_task(stack: Stack) -> tuple[str, str]:
    """A logged-in user's Cookie header and the id of a finished export of theirs."""
    user = Browserless(stack.url).register().login()
    seed(stack.database_url, user.username, 10)
    response = user.http.post(f"{stack.url}/export_posts", data={"csrf_token": user.csrf()}, allow_redirects=False)
    assert response.status_code == 303, response.status_code
    task_id = user.tasks()[0]["task_id"]
    deadline = time.monotonic() + 60
    while user.get(f"/api/tasks/{task_id}").json()["status"] not in ("finished", "failed", "canceled"):
        if time.monotonic() > deadline:
            raise RuntimeError("the export for the polling benchmark did not end within 60 s")
        time.sleep(0.2)
    return user.cookie_header(), task_id


def poll_vs_push(stack: Stack, seconds: float, hold_seconds: float, max_sockets: int, prefix: str) -> dict[str, Any]:
    """Requests/s the web process answers to /api/tasks/<id> per CPU-second, then the CPU share the
    same number of idle sockets costs over `hold_seconds` (≥ one ping interval in the full run)."""
    cookie, task_id = a_task(stack)
    web = stack.webs[0].pid
    cpu0, t0 = cpu_seconds(web), time.monotonic()
    polled = load(stack, cookie, f"/api/tasks/{task_id}", 50, seconds)
    poll_cpu, poll_wall = cpu_seconds(web) - cpu0, time.monotonic() - t0
    # Answers per CPU-second: the rate at 100 % of one core, whatever else the machine was doing.
    rps_full_cpu = polled["requests"] / max(poll_cpu, 1e-9)
    # The floor under every request of this process: the same URL without a session, answered 401 by
    # the whole stack (eventlet's HTTP, the admission gates, Flask, Flask-Limiter, Flask-Login) with
    # none of the poll's own work (the session row, the task row, the payload).
    cpu0 = cpu_seconds(web)
    anonymous = load(stack, "", f"/api/tasks/{task_id}", 50, seconds)
    floor_rps_full_cpu = anonymous["requests"] / max(cpu_seconds(web) - cpu0, 1e-9)
    if set(anonymous["status"]) != {"401"}:
        raise RuntimeError(f"the anonymous requests were not all answered 401: {anonymous['status']}")
    clients = min(max_sockets, max(1, int(rps_full_cpu)))
    users = make_users(stack, max(1, clients // 10), prefix)
    crowd = Clients(stack, cookies_file(stack, users, f"{prefix}.cookies"), clients)
    try:
        held = crowd.wait_connected()
        time.sleep(2)  # connecting is over
        cpu1, t1 = cpu_seconds(web), time.monotonic()
        time.sleep(hold_seconds)
        idle_cpu_share = (cpu_seconds(web) - cpu1) / (time.monotonic() - t1)
        crowd.release()
    finally:
        crowd.kill()
    # A client polling once a second costs 1/rps_full_cpu of a core; a socket costs idle_cpu_share/held.
    poll_per_client = 1 / rps_full_cpu
    push_per_client = max(idle_cpu_share, 1e-6) / max(held, 1)
    return {"rps_full_cpu": rps_full_cpu, "floor_rps_full_cpu": floor_rps_full_cpu,
            "poll_cpu_share": poll_cpu / poll_wall, "clients": held,
            "idle_cpu_percent": idle_cpu_share * 100, "poll_to_push_cost": poll_per_client / push_per_client,
            "5xx": polled["5xx"]}
