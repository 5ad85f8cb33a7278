"""The import in Debian's Chromium: choose a file on the profile, watch the bar, see the posts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.harness import Stack
from tests.test_browser import alert_bar, sign_up, status_of

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]


def test_import_from_the_profile(stack: Stack, page: Page, tmp_path: Path) -> None:
    """Upload a posts.json with the profile's form: the live bar ends "Done", the posts are on the profile,
    and a bad file's failure names its entry."""
    page.set_default_timeout(20_000)
    username = sign_up(page, stack)
    good = tmp_path / "posts.json"
    good.write_text(json.dumps({"posts": [{"body": f"imported {i}", "timestamp": f"2026-01-0{i}T10:00:00.000000Z"}
                                          for i in range(1, 4)]}))
    page.goto(f"{stack.url}/user/{username}")
    page.get_by_label(re.compile("Import posts from a posts.json file")).set_input_files(str(good))
    page.get_by_role("button", name="Import posts", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/user/{username}$"))
    bar = page.locator('#task-alerts [role="progressbar"][data-task-id]')
    expect(bar).to_have_count(1)
    task_id = bar.get_attribute("data-task-id")
    expect(alert_bar(page, task_id)).to_have_attribute("aria-valuenow", "100")
    expect(status_of(page, task_id)).to_have_text("Done. 3 posts imported.")
    page.reload()
    expect(page.locator(".post-body").first).to_have_text("imported 3")

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"posts": [{"body": "ok", "timestamp": "2026-01-01T10:00:00.000000Z"}, {"body": ""}]}))
    page.get_by_label(re.compile("Import posts from a posts.json file")).set_input_files(str(bad))
    page.get_by_role("button", name="Import posts", exact=True).click()
    failed = page.locator('#task-alerts [role="progressbar"][data-task-id]:not([data-task-id="%s"])' % task_id)
    expect(failed).to_have_count(1)
    expect(status_of(page, failed.get_attribute("data-task-id"))).to_have_text(
        "Failed: Entry posts[1]: the body is empty. Nothing was imported.")
