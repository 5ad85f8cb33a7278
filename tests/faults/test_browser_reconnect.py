"""A browser stays current across a restart of the socket server it is connected to."""
from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.faults.conftest import HELD_POSTS
from tests.harness import seed
from tests.test_browser import sign_up, start_export

pytestmark = pytest.mark.browser


def test_browser_reconnects_and_shows_what_finished_meanwhile(make_stack, page: Page):
    """The socket server restarts mid-export; the page reconnects by itself and shows "Done"."""
    stack = make_stack()
    username = sign_up(page, stack)
    seed(stack.database_url, username, HELD_POSTS)
    task_id = start_export(page, stack, username)
    stack.release(task_id, 5)
    bar = page.locator(f'#task-alerts [role="progressbar"][data-task-id="{task_id}"]')
    page.wait_for_function(
        "id => { const b = document.querySelector(`#task-alerts [data-task-id='${id}']`);"
        " return b && +b.getAttribute('aria-valuenow') >= 2; }", arg=task_id, timeout=60_000)
    port = stack.ports[0]
    stack.webs[0].stop()
    expect(page.locator("body")).to_have_attribute("data-socket", "disconnected", timeout=15_000)
    stack.release(task_id)
    stack.smtp.wait_for(f"{username}@example.com", timeout=120)  # finished while no server ran
    assert bar.get_attribute("aria-valuenow") != "100"
    restarted_at = time.monotonic()
    stack.start_web(port=port)
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    expect(page.locator(f'[data-task-status="{task_id}"]').first).to_contain_text("Done")
    print(f"\nbrowser: 'Done' shown {time.monotonic() - restarted_at:.1f} s after the socket server restarted")
    assert page.evaluate("document.body.getAttribute('data-socket')") == "connected"
