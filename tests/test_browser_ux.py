"""The progress experience as a user meets it (issue 12), in Debian's Chromium against a real deployment:
counts and time left on the bar, "done" in a hidden tab's title, favicon and a desktop notification,
a phone-sized screen, the post box's counter, local times, keyboard-only use and an axe-core check."""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.harness import ROOT, Stack, seed
from tests.jobs import release, release_all
from tests.test_browser import END_TIMEOUT, alert_bar, sign_up, start_export, status_of

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]
# Exports run through the test's gate (tests/jobs.py): free unless a test holds them, so no test
# depends on this machine's speed to see one "still running".
STACK_ENV = {"TESTING_JOBS": "1"}

# Where the README's screenshots come from: `SCREENSHOT_DIR=docs make test PYTEST_ARGS=tests/test_browser_ux.py`.
SHOTS = os.environ.get("SCREENSHOT_DIR")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
COUNTS = re.compile(r"^\d+% · [\d,]+ of 800,000 posts · [\d,]+/s · about \d+ (s|min) left$")

# A tab the test can hide: sessionStorage survives the redirect after "Export your posts", so the page it
# lands on is hidden from its first moment. The Notification constructor is wrapped to record what is shown.
HIDDEN_TAB_JS = """
(() => {
  const real = Object.getOwnPropertyDescriptor(Document.prototype, 'visibilityState');
  Object.defineProperty(Document.prototype, 'visibilityState', {configurable: true,
    get() { return sessionStorage.getItem('hide') ? 'hidden' : real.get.call(this); }});
  window.__notes = [];
  window.__permissionAsked = 0;
  const Real = window.Notification;
  if (!Real) return;
  function Recorded(title, options) {
    let note;
    try { note = new Real(title, options); } catch (e) { note = {close() {}}; }
    window.__notes.push({title, body: options && options.body});
    window.__lastNote = note;
    return note;
  }
  Object.defineProperty(Recorded, 'permission', {get: () => Real.permission});
  Recorded.requestPermission = (...args) => { window.__permissionAsked += 1; return Real.requestPermission(...args); };
  window.Notification = Recorded;
})();
"""


@pytest.fixture
def fresh_page(browser: Browser, browser_context_args: dict[str, Any]) -> Iterator[Any]:
    """Factory: a browser context with extra options (viewport, permissions, time zone), closed afterwards."""
    made: list[BrowserContext] = []

    def make(**options: Any) -> Page:
        context = browser.new_context(**{**browser_context_args, **options})
        context.set_default_timeout(20_000)
        made.append(context)
        return context.new_page()

    yield make
    for context in made:
        context.close()


def scroll_width(page: Page) -> int:
    """The document's full width: more than the viewport means horizontal scrolling."""
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.fixture(autouse=True)
def exports_run_free(stack: Stack) -> Iterator[None]:
    """Every test's exports run free through the gate unless the test holds them."""
    release_all(stack.export_dir, 100)
    yield
    release_all(stack.export_dir, 100)


def test_bar_tells_counts_rate_and_time_left(stack: Stack, page: Page) -> None:
    """A running export reads "N% · 412,000 of 800,000 posts · 180,000/s · about 9 s left", then in the past tense."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, 800_000)
    release_all(stack.export_dir, 10)  # held at 10 %, whatever the machine's speed
    task_id = start_export(page, stack, username)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "10", timeout=END_TIMEOUT)
    # The time left appears only once a task has run 2 s (app/eta.py): let the held task reach that age.
    page.wait_for_timeout(2_100)
    stack.release(task_id, 40)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "40", timeout=END_TIMEOUT)
    status = status_of(page, task_id)
    expect(status).to_have_text(COUNTS, timeout=END_TIMEOUT)
    if SHOTS:  # mid-way, for the README
        page.locator(f'[data-task-alert="{task_id}"]').screenshot(path=str(Path(SHOTS) / "progress-bar.png"))
    stack.release(task_id, 100)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    # Linked, not attached (the harness's attachment limit is 100 kB): the words say so.
    expect(status).to_have_text("Done — emailed you a link · Download")
    expect(page.locator(f'[data-task-alert="{task_id}"] [data-task-title]')).to_have_text("Exported posts")
    # The launch flash is overtaken by the live state; the done alert can be closed.
    expect(page.get_by_text("Your export has started")).to_have_count(0)
    announcer = page.locator("#task-announcer")
    expect(announcer).to_have_text("Exported posts: Done — emailed you a link.")
    page.locator(f'[data-task-alert="{task_id}"]').get_by_role("button", name="Close").click()
    expect(page.locator(f'[data-task-alert="{task_id}"]')).to_have_count(0)


# Each `task-progress` event tasks.js renders, with the page's clock at its arrival.
EVENT_TIMES_JS = """
window.__timed = [];
document.addEventListener('task-progress', (e) => window.__timed.push({...e.detail, at: performance.now()}));
"""
REAL_COUNTS = re.compile(r"^\d+% · [\d,]+ of 2,000,000 posts · [\d,]+/s · about \d+ s left$")


def test_a_real_export_of_two_million_posts_counts_and_its_time_left_at_half_is_right(stack: Stack, page: Page) -> None:
    """No gate: 2,000,000 real posts. The bar counts them, and the time left it shows at half-way is
    within ±25 % of the time the export then really took (the page's own clock), or within one second:
    the contract's `eta_seconds` is whole seconds, and here half of 2M posts is only ~2.5 s from the end
    while Chromium shares the two cores with the worker. `make bench` (eta) measures the error on an
    idle machine: -4 % at half-way."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, 2_000_000)
    page.add_init_script(script=EVENT_TIMES_JS)
    task_id = start_export(page, stack, username)
    expect(status_of(page, task_id)).to_have_text(REAL_COUNTS, timeout=END_TIMEOUT)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    timed = [e for e in page.evaluate("window.__timed") if e["task_id"] == task_id]
    done_at = next(e["at"] for e in timed if e["status"] == "finished")
    half = next(e for e in timed if e["status"] == "started" and e.get("eta_seconds") is not None
                and e["current"] * 2 >= e["total"])
    left_ms = done_at - half["at"]
    # The whole timeline on failure: whether the rate changed, or an event reached the page late.
    timeline = [(round(e["at"] - timed[0]["at"]), e["status"], e.get("current"), e.get("eta_seconds")) for e in timed]
    assert abs(half["eta_seconds"] * 1000 - left_ms) <= max(0.25 * left_ms, 1000), (half, left_ms, timeline)


def test_done_in_a_hidden_tab_title_favicon_and_notification(stack: Stack, fresh_page) -> None:
    """Finished while hidden: "✓ Export ready · Microblog", the done favicon and a notification; all restored on return."""
    page = fresh_page(permissions=["notifications"])
    page.add_init_script(script=HIDDEN_TAB_JS)
    username = sign_up(page, stack)
    seed(stack.database_url, username, 2_000)
    page.goto(f"{stack.url}/user/{username}")
    title = page.title()
    favicon = page.locator("link#favicon")
    rest_icon = favicon.get_attribute("href")
    page.evaluate("sessionStorage.setItem('hide', '1')")
    page.get_by_role("button", name="Export your posts").click()

    expect(page).to_have_title("✓ Export ready · Microblog", timeout=END_TIMEOUT)
    expect(favicon).to_have_attribute("href", re.compile(r"favicon-done\.svg$"))
    notes = page.evaluate("window.__notes")
    assert [n["title"] for n in notes] == ["✓ Export ready"], notes
    assert notes[0]["body"].startswith("Done")

    page.evaluate("sessionStorage.removeItem('hide'); document.dispatchEvent(new Event('visibilitychange'))")
    expect(page).to_have_title(title)
    expect(favicon).to_have_attribute("href", rest_icon)
    page.evaluate("window.__lastNote.onclick()")
    expect(page).to_have_url(re.compile(r"/tasks$"))


def test_notification_permission_is_asked_from_the_button_only(stack: Stack, fresh_page) -> None:
    """Nothing asks on load; the "Notify me" button asks once."""
    page = fresh_page()
    page.add_init_script(script=HIDDEN_TAB_JS)
    sign_up(page, stack)
    page.goto(stack.url + "/tasks")
    assert page.evaluate("Notification.permission") == "default"
    assert page.evaluate("window.__permissionAsked") == 0
    page.get_by_role("button", name="Notify me when a task finishes").click()
    page.wait_for_function("window.__permissionAsked === 1")


def test_phone_width_has_no_horizontal_scroll(stack: Stack, fresh_page) -> None:
    """At 390×844 the bars, the profile and /tasks (several rows) fit the screen's width."""
    page = fresh_page()
    username = sign_up(page, stack)  # on a wide screen: on a phone the menu is collapsed
    page.set_viewport_size({"width": 390, "height": 844})
    seed(stack.database_url, username, 3_000)
    for _ in range(2):
        task_id = start_export(page, stack, username)
        assert scroll_width(page) <= 390  # the profile with its live bar
        expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
        assert scroll_width(page) <= 390
    page.goto(stack.url + "/tasks")
    expect(page.locator("#task-history [data-task-row]")).to_have_count(2)
    expect(page.get_by_role("link", name="Download").first).to_be_visible()
    assert scroll_width(page) <= 390, scroll_width(page)
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "tasks-phone.png"), full_page=True)


def test_post_box_counts_emoji_as_the_server_does(stack: Stack, page: Page) -> None:
    """140 emoji are 140 characters (0 left) and post whole; 141 are refused with the limit, never cut."""
    sign_up(page, stack)
    page.goto(stack.url + "/index")
    box = page.get_by_label("Say something")
    assert box.get_attribute("maxlength") is None  # the browser would count UTF-16 units and cut
    box.fill("😀" * 140)
    expect(page.locator(".post-counter")).to_have_text("0 characters left")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Your post is now live!")).to_be_visible()
    expect(page.locator(".post-body").first).to_have_text("😀" * 140)

    box = page.get_by_label("Say something")
    box.fill("😀" * 141)
    expect(page.locator(".post-counter")).to_have_text("1 character too many (at most 140)")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("A post has at most 140 characters. This one has 141.")).to_be_visible()
    assert page.locator(".post-body").count() == 1


def test_times_are_local_with_a_date(stack: Stack, fresh_page) -> None:
    """In Tokyo, /tasks shows when the export ended in Tokyo time, with the date; the UTC instant is in datetime."""
    page = fresh_page(timezone_id="Asia/Tokyo", locale="en-US")
    username = sign_up(page, stack)
    seed(stack.database_url, username, 100)
    task_id = start_export(page, stack, username)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    page.goto(stack.url + "/tasks")
    ended = page.locator(f'[data-task-finished="{task_id}"] time')
    iso = ended.get_attribute("datetime")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", iso)
    tokyo = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo("Asia/Tokyo"))
    expect(ended).to_have_text(f"{tokyo:%b} {tokyo.day}, {tokyo.year}, {tokyo:%I:%M %p}")
    assert tokyo.utcoffset() != datetime.now(timezone.utc).utcoffset()


def test_keyboard_only_launch_cancel_retry_download(stack: Stack, page: Page) -> None:
    """Tab and Enter alone launch an export, cancel it, try again and download the result."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, 300)
    release_all(stack.export_dir, 20)  # the first export stays running until it is canceled
    page.goto(f"{stack.url}/user/{username}")

    def press_on(name: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == name:
                page.keyboard.press("Enter")
                return
        raise AssertionError(f"{name!r} cannot be reached with Tab")

    press_on("Export your posts")
    bar = page.locator('#task-alerts [role="progressbar"][data-task-id]')
    expect(bar).to_have_count(1)
    task_id = bar.get_attribute("data-task-id")
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "20", timeout=END_TIMEOUT)
    # Cancel posts a form and lands on a new page; the live event can say "Canceled" on the old one
    # first, and a Tab pressed before the new page is there would be lost with the old one.
    with page.expect_navigation():
        press_on("Cancel")
    expect(status_of(page, task_id)).to_have_text("Canceled")
    release_all(stack.export_dir, 100)  # the retry runs free
    with page.expect_navigation():
        press_on("Try again")
    retry = page.locator('#task-alerts [role="progressbar"][data-task-id]').last
    expect(retry).not_to_have_attribute("data-task-id", task_id)
    expect(retry).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    with page.expect_download() as info:
        press_on("Download")
    assert re.fullmatch(rf"microblog-{username}-posts-\d{{4}}-\d\d-\d\d\.json", info.value.suggested_filename)


def test_try_again_goes_once_a_retry_runs(stack: Stack, context: BrowserContext, page: Page) -> None:
    """A canceled export's "Try again" disappears as soon as another tab starts a new export."""
    username = sign_up(page, stack)
    seed(stack.database_url, username, 300)
    release_all(stack.export_dir, 20)  # held until canceled (and the other tab's export stays running)
    task_id = start_export(page, stack, username)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "20", timeout=END_TIMEOUT)
    page.locator(f'[data-task-actions="{task_id}"]').get_by_role("button", name="Cancel").click()
    try_again = page.locator(f'[data-task-actions="{task_id}"]').get_by_role("button", name="Try again")
    expect(try_again).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")

    other = context.new_page()
    start_export(other, stack, username)
    expect(try_again).to_have_count(0)


def test_paused_live_updates_are_visible(stack: Stack, page: Page) -> None:
    """When the socket drops, "Live updates paused — reconnecting…" shows until it is back."""
    sign_up(page, stack)
    page.goto(stack.url + "/tasks")
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")
    notice = page.get_by_text("Live updates paused — reconnecting…")
    expect(notice).to_be_hidden()
    # Record the notice's visibility as it changes: the reconnect may be quicker than any poll.
    page.evaluate("""() => { const n = document.getElementById('live-status'); window.__shown = [];
        new MutationObserver(() => window.__shown.push(!n.hidden)).observe(n, {attributes: true}); }""")
    page.evaluate("window.microblogSocket.io.engine.close()")
    page.wait_for_function("window.__shown.includes(true)")
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")
    expect(notice).to_be_hidden()


def axe_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                          ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_violation(stack: Stack, fresh_page) -> None:
    """Login, home, profile, /tasks and a page with a live bar: no serious or critical axe-core violation."""
    # axe is injected as a script element: a strict CSP would refuse it, so this context bypasses CSP.
    page = fresh_page(bypass_csp=True)
    page.goto(stack.url + "/auth/login")
    assert axe_violations(page) == []
    username = sign_up(page, stack)
    seed(stack.database_url, username, 300)
    for path in ("/index", f"/user/{username}", "/tasks"):
        page.goto(stack.url + path)
        assert axe_violations(page) == [], path
    release_all(stack.export_dir, 30)
    task_id = start_export(page, stack, username)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "30", timeout=END_TIMEOUT)
    assert axe_violations(page) == [], "profile with a live bar"
    stack.release(task_id, 100)
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100", timeout=END_TIMEOUT)
    page.goto(stack.url + "/tasks")
    assert axe_violations(page) == [], "/tasks with a finished export"


def test_a_phase_under_a_second_gets_no_message(stack: Stack, page: Page) -> None:
    """"Sending the email…" shows only if that phase lasts a second; a quick one goes straight to done.

    The events are the test's own, handed to the page's task_progress handler, so the test decides
    how long each phase lasts."""
    sign_up(page, stack)
    page.goto(stack.url + "/tasks")
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")
    page.evaluate("""() => { window.__said = [];
        new MutationObserver(() => document.querySelectorAll('[data-task-status]').forEach(
            n => window.__said.push([n.getAttribute('data-task-status'), n.textContent]))).observe(document.body, {subtree: true, childList: true,
            characterData: true}); }""")
    base = {"name": "export_posts", "description": "Exporting posts", "done_description": "Exported posts",
            "noun": "posts", "download_url": None, "rate": None, "eta_seconds": None, "created_at": None,
            "started_at": None, "finished_at": None, "retry_url": None, "delivery": "attached"}
    send = "(e) => window.microblogSocket.listeners('task_progress').forEach(f => f(e))"
    for task_id, slow in (("quick", False), ("slow", True)):
        running = {**base, "task_id": task_id, "status": "started", "progress": 95, "current": 10, "total": 10}
        page.evaluate(send, {**running, "message": None})
        page.evaluate(send, {**running, "message": "Sending the email…"})
        status = page.locator(f'#task-history [data-task-status="{task_id}"]')
        if slow:
            expect(status).to_have_text("Sending the email…")
        page.evaluate(send, {**running, "status": "finished", "progress": 100, "message": None})
        expect(status).to_have_text("Done — emailed to you")
    said = {tuple(pair) for pair in page.evaluate("window.__said")}
    assert ("slow", "Sending the email…") in said
    assert ("quick", "Sending the email…") not in said
    assert ("quick", "100% · 10 of 10 posts") not in said and ("quick", "95% · 10 of 10 posts") in said


def test_a_rerun_reopens_an_ended_task_without_a_reload(stack: Stack, page: Page) -> None:
    """An export failed; an operator reruns its job (what rq-dashboard's Requeue does): the page
    that showed it failed shows it running again and then offers the download, without a reload."""
    from rq.job import Job

    from tests.harness import user_id_of

    username = sign_up(page, stack)
    seed(stack.database_url, username, 30)
    stack.export_dir.mkdir(parents=True, exist_ok=True)
    blocker = stack.export_dir / str(user_id_of(stack.database_url, username))
    blocker.write_text("not a directory")  # the export cannot write its file: it fails
    try:
        task_id = start_export(page, stack, username)
        expect(alert_bar(page, task_id)).to_have_attribute("data-status", "failed", timeout=END_TIMEOUT)
    finally:
        blocker.unlink()
    page.goto(stack.url + "/tasks")  # rendered by the server as ended, with its row's seq
    expect(page.locator("body")).to_have_attribute("data-socket", "connected")
    page.evaluate("window.__sameDocument = true")
    release(stack.export_dir, task_id, 20)  # the rerun holds at 20 % until the test lets it finish
    Job.fetch(task_id, connection=stack.redis.client()).requeue()
    bar = page.locator(f'table [role="progressbar"][data-task-id="{task_id}"]')
    expect(bar).to_have_attribute("data-status", "started", timeout=END_TIMEOUT)  # running again, live
    expect(page.locator(f'table [data-task-actions="{task_id}"]').get_by_role("button", name="Cancel")).to_be_visible()
    release(stack.export_dir, task_id, 100)
    row_status = status_of(page, task_id, "table")
    expect(row_status.get_by_role("link", name="Download")).to_be_visible(timeout=END_TIMEOUT)
    expect(row_status).to_contain_text("Done")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
