"""The export as a user sees it: Playwright drives Debian's Chromium against a real deployment
(web server, worker, Redis, SMTP; SQLite) and watches the live progress bar.

Exports here are held (tests/jobs.py): each step of the bar happens when the test releases it, so
"mid-export" is a state the test chooses, not a guess about how fast this machine writes posts."""
from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.harness import PASSWORD, Stack, seed

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]

STACK_ENV = {"TESTING_JOBS": "1"}  # the `stack` fixture's exports advance only as the test releases them
POSTS = 120
END_TIMEOUT = 60_000  # ms; a slow machine may take ten times longer than ours, a hung one never ends
SCREENSHOT = "/tmp/browser-done.png"

# Installed in every page before its own scripts run: records each value a bar shows (from the
# server-rendered HTML on) and each `task-progress` event tasks.js dispatches after rendering one.
RECORDER_JS = """
(() => {
  const BAR = '[role="progressbar"][data-task-id]';
  const bars = window.__bars = [];
  const events = window.__events = [];
  const record = (bar) => bars.push({
    id: bar.getAttribute('data-task-id'),
    where: bar.closest('[data-task-row]') ? 'row' : 'alert',
    value: parseInt(bar.getAttribute('aria-valuenow'), 10),
  });
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === 'attributes') { if (m.target.matches(BAR)) record(m.target); continue; }
      for (const node of m.addedNodes) {
        if (node.nodeType !== 1) continue;
        if (node.matches(BAR)) record(node);
        node.querySelectorAll(BAR).forEach(record);
      }
    }
  }).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow']});
  document.addEventListener('task-progress', (e) => events.push(e.detail));
  document.addEventListener('DOMContentLoaded', () => {
    window.__atLoad = Array.from(document.querySelectorAll(BAR), (b) => ({
      id: b.getAttribute('data-task-id'), value: parseInt(b.getAttribute('aria-valuenow'), 10)}));
  });
})();
"""


@pytest.fixture
def context(context: BrowserContext) -> BrowserContext:
    """pytest-playwright's fresh context, with the bar recorder in every page it opens."""
    context.add_init_script(script=RECORDER_JS)
    context.set_default_timeout(20_000)
    return context


# --- what a user does -------------------------------------------------------------------------------

def sign_up(page: Page, stack: Stack) -> str:
    """Register and log in through the real forms; returns the new username."""
    username = "b" + uuid.uuid4().hex[:10]
    page.goto(stack.url + "/auth/register")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Profile")).to_be_visible()
    return username


def start_export(page: Page, stack: Stack, username: str) -> str:
    """Open the profile, click "Export your posts"; returns the id of the bar that appears."""
    page.goto(f"{stack.url}/user/{username}")
    page.get_by_role("button", name="Export your posts").click()
    expect(page).to_have_url(re.compile(rf"/user/{username}$"))
    bar = page.locator('#task-alerts [role="progressbar"][data-task-id]')
    expect(bar).to_have_count(1)
    return bar.get_attribute("data-task-id")


def alert_bar(page: Page, task_id: str) -> Locator:
    """The progress bar in the alert of a task at the top of a page."""
    return page.locator(f'[data-task-alert="{task_id}"] [role="progressbar"][data-task-id="{task_id}"]')


def status_of(page: Page, task_id: str, scope: str = "") -> Locator:
    """The status text next to a task's bar (within `scope`, a CSS prefix, if given)."""
    return page.locator(f'{scope} [data-task-status="{task_id}"]'.strip())


def shown_values(page: Page, task_id: str, where: str = "alert") -> list[int]:
    """Every aria-valuenow this page's bar of the task has shown, in order, since the page loaded."""
    return page.evaluate("([id, where]) => window.__bars.filter(r => r.id === id && r.where === where)"
                         ".map(r => r.value)", [task_id, where])


def step_to(page: Page, stack: Stack, task_id: str, percent: int) -> None:
    """Release a held export to `percent` and wait until the alert's bar shows it."""
    stack.release(task_id, percent)
    if percent < 100:
        expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", str(percent), timeout=END_TIMEOUT)


def mark_document(page: Page) -> None:
    """Tag the current document: the tag survives anything but a reload or navigation."""
    page.evaluate("window.__sameDocument = true")


def assert_same_document(page: Page) -> None:
    """The page was neither reloaded nor navigated since mark_document."""
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded or navigated"


def assert_never_decreases(values: list[int]) -> None:
    """A bar's values only go up (repeats allowed)."""
    assert values == sorted(values), f"the bar went backwards: {values}"


def assert_download_serves_posts(page: Page, task_id: str, count: int) -> None:
    """The Download link next to the bar serves the export (posts.json's format) with every post, oldest first."""
    link = status_of(page, task_id).first.get_by_role("link", name="Download")
    expect(link).to_have_attribute("href", f"/tasks/{task_id}/download")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert re.fullmatch(r"microblog-[\w.-]+-posts-\d{4}-\d\d-\d\d\.json", download.suggested_filename)
    with open(download.path(), encoding="utf-8") as f:
        posts = json.load(f)["posts"]
    assert len(posts) == count
    assert posts[0]["body"] == f"Seed post 1 of {count}"
    assert posts[-1]["body"] == f"Seed post {count} of {count}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", posts[0]["timestamp"])


# --- the tests ----------------------------------------------------------------------------------------

def test_watch_export_progress_live(stack: Stack, page: Page) -> None:
    """Click "Export your posts" and, without reloading, watch the bar climb to 100, then download."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    task_id = start_export(page, stack, username)
    mark_document(page)
    bar = alert_bar(page, task_id)
    for percent in (10, 40, 70, 100):
        step_to(page, stack, task_id, percent)

    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    expect(status_of(page, task_id)).to_contain_text("Done")
    expect(bar).to_have_attribute("data-status", "finished")
    assert_same_document(page)
    values = shown_values(page, task_id)
    assert_never_decreases(values)
    assert values[-1] == 100
    # Live, not one jump at the end: several distinct steps between the start and done.
    assert len({v for v in values if 0 < v < 100}) >= 3, values
    assert [e["status"] for e in page.evaluate("window.__events") if e["task_id"] == task_id][-1] == "finished"

    page.locator(f'[data-task-alert="{task_id}"]').screenshot(path=SCREENSHOT)
    assert_download_serves_posts(page, task_id, POSTS)


def test_reload_mid_export_shows_current_progress_at_once(stack: Stack, page: Page) -> None:
    """A reload mid-export serves the bar with its current value, and it goes on to 100 live."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    task_id = start_export(page, stack, username)
    step_to(page, stack, task_id, 20)
    before = int(alert_bar(page, task_id).get_attribute("aria-valuenow"))

    response = page.reload(wait_until="domcontentloaded")
    # Server-rendered: the bar is in the HTML itself, not added later by the socket's snapshot.
    tag = re.search(rf'<div[^>]*role="progressbar"[^>]*data-task-id="{task_id}"[^>]*>', response.text())
    assert tag, "the reloaded page's HTML has no bar for the running export (did it end before the reload?)"
    served = int(re.search(r'aria-valuenow="(\d+)"', tag.group(0)).group(1))
    assert before <= served < 100, (before, served)
    at_load = [b["value"] for b in page.evaluate("window.__atLoad") if b["id"] == task_id]
    assert at_load == [served]
    mark_document(page)

    bar = alert_bar(page, task_id)
    step_to(page, stack, task_id, 60)
    step_to(page, stack, task_id, 100)
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    expect(status_of(page, task_id)).to_contain_text("Done")
    assert_same_document(page)
    values = shown_values(page, task_id)
    assert values[0] == served
    assert_never_decreases(values)
    assert any(served < v < 100 for v in values), f"no live step between the reload and done: {values}"


def test_second_tab_on_tasks_page_follows_the_export(stack: Stack, context: BrowserContext, page: Page) -> None:
    """A /tasks tab opened before the export shows its row appear and finish, without reloading."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    history = context.new_page()
    history.goto(stack.url + "/tasks")
    expect(history.locator("body")).to_have_attribute("data-socket", "connected")
    expect(history.locator("#task-history tbody tr[data-task-row]")).to_have_count(0)
    mark_document(history)

    task_id = start_export(page, stack, username)

    row = history.locator(f'#task-history tr[data-task-row="{task_id}"]')
    expect(row).to_have_count(1)
    stack.release(task_id, 30)
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "30", timeout=END_TIMEOUT)
    stack.release(task_id)
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    expect(row.locator(f'[data-task-status="{task_id}"]')).to_contain_text("Done")
    expect(row.get_by_role("link", name="Download")).to_have_attribute("href", f"/tasks/{task_id}/download")
    # Local time with the date (the context's locale is en-US): "Dec 1, 2026, 07:52 PM".
    expect(row.locator(f'[data-task-finished="{task_id}"] time')).to_have_text(
        re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d\d:\d\d [AP]M$"))
    assert_same_document(history)
    values = shown_values(history, task_id, where="row")
    assert_never_decreases(values)
    assert values[-1] == 100
    assert any(0 < v < 100 for v in values), f"the row jumped straight to the end: {values}"


def test_cancel_from_the_tasks_page_then_try_again(stack: Stack, page: Page) -> None:
    """Cancel on a running export's row ends it "Canceled" with a "Try again" that starts a new export."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    task_id = start_export(page, stack, username)
    stack.release(task_id, 5)
    page.goto(stack.url + "/tasks")
    row = page.locator(f'#task-history tr[data-task-row="{task_id}"]')
    page.wait_for_function(
        """(id) => { const bar = document.querySelector(`tr[data-task-row="${id}"] [role="progressbar"]`);
                     const v = bar && parseInt(bar.getAttribute('aria-valuenow'), 10); return v >= 1 && v <= 90; }""",
        arg=task_id, timeout=END_TIMEOUT)

    row.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(re.compile(r"/tasks$"))
    expect(page.get_by_role("alert").filter(has_text="The task was canceled.")).to_be_visible()
    expect(row.locator(f'[data-task-status="{task_id}"]')).to_have_text("Canceled")
    expect(row.get_by_role("progressbar")).to_have_attribute("data-status", "canceled")
    assert int(row.get_by_role("progressbar").get_attribute("aria-valuenow")) < 100
    # The socket's snapshot of the canceled task arrives too and must not change the verdict.
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")
    page.wait_for_function("(id) => window.__events.some(e => e.task_id === id)", arg=task_id)
    assert {e["status"] for e in page.evaluate("window.__events") if e["task_id"] == task_id} == {"canceled"}
    expect(row.locator(f'[data-task-status="{task_id}"]')).to_have_text("Canceled")
    expect(row.get_by_role("link", name="Download")).to_have_count(0)

    row.get_by_role("button", name="Try again").click()
    rows = page.locator("#task-history tr[data-task-row]")
    expect(rows).to_have_count(2)
    retry_id = rows.first.get_attribute("data-task-row")
    assert retry_id != task_id
    stack.release(retry_id)
    expect(page.locator(f'tr[data-task-row="{retry_id}"] [role="progressbar"]')).to_have_attribute(
        "aria-valuenow", "100", timeout=END_TIMEOUT)


def test_cancel_from_the_alert_bar_says_canceled(stack: Stack, page: Page) -> None:
    """Cancel on the bar at the top of the profile: after the redirect that bar says Canceled, with Try again."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    task_id = start_export(page, stack, username)
    step_to(page, stack, task_id, 5)

    page.locator(f'[data-task-actions="{task_id}"]').get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("alert").filter(has_text="The task was canceled.")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")
    bar = alert_bar(page, task_id)
    expect(bar).to_have_attribute("data-status", "canceled", timeout=5_000)
    expect(status_of(page, task_id)).to_have_text("Canceled")
    expect(page.locator(f'[data-task-actions="{task_id}"]').get_by_role("button", name="Try again")).to_be_visible()


def test_export_button_returns_when_the_export_ends(stack: Stack, page: Page) -> None:
    """Once the bar says done, the profile offers "Export your posts" again without a reload."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    task_id = start_export(page, stack, username)
    stack.release(task_id)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    expect(page.get_by_role("button", name="Export your posts")).to_be_visible(timeout=5_000)
    expect(page.get_by_text("An export of your posts is in progress.")).to_be_hidden()


def test_page_drops_an_event_older_than_what_it_shows(stack: Stack, page: Page) -> None:
    """An event older (lower seq) than the newest the page applied, e.g. a snapshot that raced a live
    step, changes nothing: the bar neither goes back nor says "Waiting for a worker" again."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, POSTS)
    task_id = start_export(page, stack, username)
    step_to(page, stack, task_id, 40)
    newest = page.evaluate("(id) => window.__events.filter(e => e.task_id === id).pop()", task_id)
    stale = {**newest, "status": "queued", "progress": 0, "seq": newest["seq"] - 1}
    # Straight into the page's handler, as if the socket delivered it (the server would drop it first).
    page.evaluate("(t) => window.microblogSocket.listeners('task_progress').forEach((f) => f(t))", stale)
    assert alert_bar(page, task_id).get_attribute("aria-valuenow") == "40"
    assert alert_bar(page, task_id).get_attribute("data-status") == "started"
    assert "Waiting" not in status_of(page, task_id).first.inner_text()
    assert page.evaluate("(id) => window.__events.filter(e => e.task_id === id).pop().seq", task_id) == newest["seq"]
    stack.release(task_id)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
