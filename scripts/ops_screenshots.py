"""Screenshots for the README's Operations section: /admin/rq and Prometheus' graph of microblog_tasks_total.

Starts a private deployment (the test harness: Redis, web, worker, SMTP), runs exports that finish,
fail and are canceled, starts Debian's Prometheus on it, and photographs both in headless Chromium.
`make screenshots-ops` (writes docs/ops-rq-dashboard.png and docs/ops-prometheus-tasks.png).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.harness import PASSWORD, RedisServer, SmtpServer, Stack, migrate, new_database_url, new_user
from tests.test_ops_stack import TOKEN, admin, cancel_running_export, failed_export, start_prometheus

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> None:
    """Build the deployment, make some history, take the two pictures."""
    workdir = Path(tempfile.mkdtemp(prefix="ops-shots-"))
    url, drop = new_database_url("sqlite", workdir)
    migrate(url)
    redis_server, smtp = RedisServer(workdir / "redis").start(), SmtpServer().start()
    stack = Stack(workdir, url, redis_server, smtp, extra_env={"METRICS_TOKEN": TOKEN})
    prometheus = None
    try:
        stack.start_web()
        stack.start_worker()
        prometheus, base = start_prometheus(workdir, f"127.0.0.1:{stack.ports[0]}")
        for posts in (10, 2000, 50):
            user = new_user(stack, posts=posts)
            user.socket().terminal(user.export())
            time.sleep(2)  # spread the history over a few scrapes so the graph shows steps
        _, _, _, blocker = failed_export(stack)
        blocker.unlink()
        cancel_running_export(stack)
        root = admin(stack)
        time.sleep(5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{stack.url}/auth/login")
            page.fill("input[name=username]", root.username)
            page.fill("input[name=password]", PASSWORD)
            page.click("input[type=submit], button[type=submit]")
            page.goto(f"{stack.url}/admin/rq/")
            page.wait_for_selector("#queues tbody tr td a", timeout=15_000)
            page.screenshot(path=str(DOCS / "ops-rq-dashboard.png"), full_page=True)
            page.goto(f"{base}/graph?g0.expr=microblog_tasks_total&g0.tab=0&g0.range_input=2m")
            page.wait_for_selector("canvas, .graph-legend, svg", timeout=15_000)
            time.sleep(2)
            page.screenshot(path=str(DOCS / "ops-prometheus-tasks.png"), full_page=True)
            browser.close()
        print("wrote", DOCS / "ops-rq-dashboard.png", DOCS / "ops-prometheus-tasks.png")
    finally:
        if prometheus:
            prometheus.stop()
        stack.stop()
        smtp.stop()
        redis_server.stop()
        drop()


if __name__ == "__main__":
    main()
