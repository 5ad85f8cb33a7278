"""What an export tells its user (issue 12), end to end on the real stack: counts on the wire and the row,
how it was delivered, and the email's HTML and text bodies as the SMTP server received them."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.harness import Mail, new_user


class EmailHtml(HTMLParser):
    """The parts of the export email's HTML a reader sees: text, links (with style) and marked elements."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[dict[str, str]] = []
        self.marked: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note links and data-* markers."""
        found = dict(attrs)
        if tag == "a":
            self.links.append({k: v or "" for k, v in found.items()})
        for name in found:
            if name.startswith("data-"):
                self.marked.setdefault(name[5:], [])
                self._open.append(name[5:])

    def handle_data(self, data: str) -> None:
        """Collect the visible text (and the text of marked elements)."""
        self.text.append(data)
        for name in self._open:
            self.marked[name].append(data)

    def handle_endtag(self, tag: str) -> None:
        """Marked elements here hold no nested markers: closing any tag closes the innermost one."""
        if self._open and tag in ("strong", "a", "p"):
            self._open.pop()

    def visible(self) -> str:
        """All text, whitespace collapsed."""
        return re.sub(r"\s+", " ", "".join(self.text)).strip()


def html_of(mail: Mail) -> EmailHtml:
    """The parsed HTML body."""
    parser = EmailHtml()
    parser.feed(mail.message.get_body(("html",)).get_content())
    return parser


def test_events_and_row_carry_counts_and_attached_delivery(stack):
    """The bar's events say how many posts of how many; the row keeps them; the email says "attached"."""
    user = new_user(stack, posts=1200)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        running = [e for e in watcher.of(task_id) if e["status"] == "started" and e["current"] is not None]
        assert running, watcher.of(task_id)
        assert all(e["total"] == 1200 and 0 < e["current"] <= 1200 for e in running)
        assert (end["current"], end["total"], end["delivery"], end["eta_seconds"]) == (1200, 1200, "attached", None)
        assert end["done_description"] == "Exported posts" and end["noun"] == "posts"
        api = user.get(f"/api/tasks/{task_id}").json()
        assert (api["current"], api["total"], api["delivery"]) == (1200, 1200, "attached")
        assert api["result_bytes"] > 0

        mail = stack.smtp.wait_for(user.email)
        html, text = html_of(mail), mail.text()
        assert "1,200 posts" in html.visible() and "1,200 posts" in text
        size = re.search(r"\d+(\.\d)? KiB", html.visible()).group(0)  # binary unit, named as such
        assert size in text
        assert "attached to this email as posts.json" in html.visible()
        button = [a for a in html.links if "data-download-button" in a]
        assert button and button[0]["href"] == f"{stack.url}/tasks/{task_id}/download"
        assert "background" in button[0]["style"]  # styled as a button, not a raw URL
        assert f"{stack.url}/tasks/{task_id}/download" in text

        history = user.get("/tasks").text
        assert "Exported posts" in history and "Done — emailed to you" in history
    finally:
        watcher.close()


def test_linked_export_says_emailed_you_a_link(stack):
    """Over the attachment limit the page says "emailed you a link", and the email names the size in MiB-style units."""
    user = new_user(stack, posts=3000)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        assert end["delivery"] == "linked"
        assert "Done — emailed you a link" in user.get("/tasks").text
        mail = stack.smtp.wait_for(user.email)
        html, text = html_of(mail), mail.text()
        assert mail.attachment("posts.json") is None
        assert "too large to attach" in html.visible() and "too large to attach" in text
        assert "3,000 posts" in text
        kib = end["result_bytes"] / 1024
        assert f"{kib:.1f} KiB" in html.visible() and f"{kib:.1f} KiB" in text
        assert any(a["href"] == f"{stack.url}/tasks/{task_id}/download" for a in html.links)
    finally:
        watcher.close()
