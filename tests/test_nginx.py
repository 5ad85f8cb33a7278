"""Two socket servers behind nginx (deploy/nginx.conf as shipped), two workers, PostgreSQL.

nginx's ip_hash sends every connection of this machine (one client address) to one server; the
second tab of a user connects straight to the other server, as a tab that nginx placed there would.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.deploy_harness import NGINX, Nginx
from tests.harness import (Browserless, RedisServer, SmtpServer, Stack, Watcher, assert_well_ordered, migrate,
                           new_database_url, seed, wait_until)

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx missing: `make nginx` installs it")


class GatedSmtp(SmtpServer):
    """An SMTP server that holds each message until the test opens the gate (an export stays running)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        """Wait for the gate, then keep the message."""
        self.waiting.set()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 60)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Nginx]]:
    """PostgreSQL, Redis, SMTP, two web servers, two workers and nginx in front of the servers."""
    workdir = tmp_path_factory.mktemp("nginx-stack")
    url, drop = new_database_url("postgresql", workdir)
    migrate(url)
    redis_server = RedisServer(workdir / "redis").start()
    smtp = GatedSmtp().start()
    stack = Stack(workdir, url, redis_server, smtp, extra_env={"MAIL_TIMEOUT": "90"})
    nginx = None
    try:
        for _ in range(2):
            stack.start_web()
            stack.start_worker()
        nginx = Nginx(workdir, stack.ports).start()
        yield stack, nginx
    finally:
        if nginx:
            nginx.stop()
        stack.stop()
        smtp.stop()
        redis_server.stop()
        drop()


def user_behind(nginx: Nginx, stack: Stack, posts: int = 0) -> Browserless:
    """A user who registered and logged in through nginx."""
    user = Browserless(nginx.url).register().login()
    if posts:
        seed(stack.database_url, user.username, posts)
    return user


def direct(stack: Stack, port: int, user: Browserless) -> Watcher:
    """A tab of the user's on one particular server."""
    return Watcher(f"http://127.0.0.1:{port}", user.cookie_header())


def test_tabs_on_both_servers_get_every_event_in_order(lb):
    """One user, a tab on each server: both see the whole export in order; another user sees none of it."""
    stack, nginx = lb
    picked = nginx.upstream_of()
    other = next(p for p in stack.ports if p != picked)
    ann = user_behind(nginx, stack, posts=5_000)
    bob = user_behind(nginx, stack)
    # The WebSocket client sends a browser's Origin (nginx's URL): accepted only because nginx passes
    # Host (with its port) and X-Forwarded-* on, so the server sees the public origin as its own.
    tabs = [ann.socket(), direct(stack, other, ann)]
    bob_tabs = [bob.socket(), direct(stack, other, bob)]
    try:
        task = ann.export()
        for tab in tabs:
            assert tab.terminal(task)["status"] == "finished"
        seen = [tab.of(task) for tab in tabs]
        assert_well_ordered(seen[0])
        assert seen[0] == seen[1], "both tabs got the same events in the same order"
        assert len(seen[0]) >= 3, seen[0]
        assert len(stack.smtp.to(ann.email)) == 1
        # Bob's own export after Ann's: anything of Ann's would have reached his tabs before it.
        bobs = bob.export()
        for tab in bob_tabs:
            tab.terminal(bobs)
            assert {e["task_id"] for e in tab.events} == {bobs}, tab.events
    finally:
        for tab in tabs + bob_tabs:
            tab.close()


def test_long_polling_only_client_through_ip_hash(lb):
    """A client that cannot use WebSocket long-polls through nginx (sticky ip_hash) to the end of its export."""
    stack, nginx = lb
    user = user_behind(nginx, stack, posts=2_000)
    tab = user.socket(transports=["polling"], headers={"Origin": nginx.url})
    try:
        assert tab.client.transport() == "polling"
        task = user.export()
        assert tab.terminal(task)["status"] == "finished"
        assert_well_ordered(tab.of(task))
    finally:
        tab.close()


def test_rolling_restart_of_one_server_during_an_export(lb):
    """Stop the server holding a tab mid-export: the tab reconnects, is current again, the export ends fine."""
    stack, nginx = lb
    smtp: GatedSmtp = stack.smtp
    picked = nginx.upstream_of()
    web = stack.webs[stack.ports.index(picked)]
    user = user_behind(nginx, stack, posts=2_000)
    tabs = [user.socket(),
            direct(stack, picked, user)]  # a tab that only this server can take back
    smtp.waiting.clear()
    smtp.gate.clear()  # the export stays running (sending its email) until we open the gate
    try:
        task = user.export()
        assert smtp.waiting.wait(60), "the export reached its email"
        for tab in tabs:
            tab.wait_for(lambda e: e["task_id"] == task and e["status"] == "started", what="the export running")
        before = {id(tab): len(tab.events) for tab in tabs}
        stopped_at = time.monotonic()
        web.stop()
        current = user.get(f"/api/tasks/{task}").json()  # through nginx: served by the other server
        assert current["status"] == "started"

        def caught_up(tab: Watcher) -> float | None:
            fresh = [e for e in tab.events[before[id(tab)]:] if e["task_id"] == task]
            if tab.connects >= 2 and fresh and fresh[-1]["progress"] == current["progress"]:
                return tab.received_at[id(fresh[-1])] - stopped_at
            return None

        via_nginx = wait_until(lambda: caught_up(tabs[0]), 30, "the nginx tab to be current again")
        print(f"\nrolling restart: tab through nginx current again {via_nginx:.2f} s after its server stopped")
        restarted_at = time.monotonic()
        stack.webs.remove(web)
        stack.start_web(picked)  # the rolling restart's second half: the same server comes back
        direct_tab = wait_until(lambda: caught_up(tabs[1]), 30, "the direct tab to be current again")
        print(f"rolling restart: tab on the restarted server current again {direct_tab:.2f} s after the stop "
              f"({time.monotonic() - restarted_at:.2f} s after it was started again)")
        smtp.gate.set()
        for tab in tabs:
            end = tab.terminal(task)
            assert end["status"] == "finished" and end["message"] in (None, ""), end
            events = tab.of(task)
            assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)
        mail = smtp.wait_for(user.email)
        assert mail.attachment("posts.json")
        assert len(smtp.to(user.email)) == 1
    finally:
        smtp.gate.set()
        for tab in tabs:
            tab.close()
