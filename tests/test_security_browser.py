"""The Content-Security-Policy as Chromium applies it: every page, one with a live bar, no violation."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.harness import Stack, seed
from tests.test_browser import END_TIMEOUT, sign_up, start_export

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]

# Enough posts that the export is still running while the pages with its bar are visited.
LIVE_POSTS = 600_000

VIOLATIONS_JS = """
(() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) =>
    window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`));
})();
"""


@pytest.fixture
def context(context: BrowserContext) -> BrowserContext:
    """A fresh context recording every CSP violation of every page."""
    context.add_init_script(script=VIOLATIONS_JS)
    context.set_default_timeout(20_000)
    return context


def visit(page: Page, url: str, console: list[str]) -> None:
    """Open a page, let its scripts run, and fail on any CSP violation it reported."""
    response = page.goto(url)
    assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_load_state("load")
    violations = page.evaluate("window.__csp") + [m for m in console if "Content Security Policy" in m]
    assert violations == [], f"{url}: {violations}"


def test_no_csp_violation_on_any_page(stack: Stack, page: Page) -> None:
    """Anonymous pages, every signed-in page, and pages with a running export's bar: no violation."""
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    for path in ("/auth/login", "/auth/register"):
        visit(page, stack.url + path, console)
    username = sign_up(page, stack)
    seed(stack.database_url, username, LIVE_POSTS)
    task_id = start_export(page, stack, username)
    live_pages = 0
    for path in (f"/user/{username}", "/tasks", "/index", "/explore", "/auth/account"):
        visit(page, stack.url + path, console)
        bar = page.locator(f'[role="progressbar"][data-task-id="{task_id}"] .progress-bar').first
        if page.locator(f'[data-task-id="{task_id}"][data-status="started"]').count():
            # The width came through CSSOM (tasks.js), the only way a strict CSP lets it in.
            assert re.match(r"\d+%", bar.evaluate("b => b.style.width"))
            live_pages += 1
    assert live_pages >= 1, "the export ended before any page with its running bar was checked"
    expect(page.locator(f'[data-task-alert="{task_id}"] [role="progressbar"]')).to_have_attribute(
        "aria-valuenow", "100", timeout=END_TIMEOUT)
    visit(page, f"{stack.url}/user/{username}", console)
    assert page.evaluate("window.__csp") == []
