"""The Content-Security-Policy as Chromium applies it: every page, one with a live bar, no violation."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.harness import Stack, seed
from tests.test_browser import END_TIMEOUT, sign_up, start_export

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]

LIVE_POSTS = 1_000  # the export is held at its email (SMTP DATA unanswered) while its bar is visited

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
    # The export stays running, whatever this machine's speed, until its email is let through: a
    # 600,000-post export once ended before the last page was rendered, which then had no bar.
    stack.smtp.hold()
    try:
        task_id = start_export(page, stack, username)
        stack.smtp.wait_held(60)
        for path in (f"/user/{username}", "/tasks", "/index", "/explore", "/auth/account"):
            visit(page, stack.url + path, console)
            expect(page.locator(f'[data-task-id="{task_id}"][data-status="started"]').first).to_be_attached()
            # The width came through CSSOM (tasks.js), the only way a strict CSP lets it in.
            bar = page.locator(f'[role="progressbar"][data-task-id="{task_id}"] .progress-bar').first
            assert re.match(r"\d+%", bar.evaluate("b => b.style.width")), path
    finally:
        stack.smtp.release()
    expect(page.locator(f'[data-task-alert="{task_id}"] [role="progressbar"]')).to_have_attribute(
        "aria-valuenow", "100", timeout=END_TIMEOUT)
    visit(page, f"{stack.url}/user/{username}", console)
    assert page.evaluate("window.__csp") == []
