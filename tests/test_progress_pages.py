"""What the pages say about tasks (issue 12): past tense, delivery, posts, size, duration, UTC times in
<time>, "Try again" only while no retry runs, the export estimate, the post box's limit, the favicon."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Post, Task, TaskStatus
from app.formatting import duration, filesize
from tests.factories import count, make_task, text_of


@pytest.fixture
def alice(make_user, auth):
    """Alice, registered and logged in."""
    user = make_user("alice")
    auth.login("alice")
    return user


def update_task(app, task_id: str, **values) -> None:
    """Set columns of a task row directly (as the job would have)."""
    with app.app_context():
        db.session.execute(sa.update(Task).where(Task.id == task_id).values(**values))
        db.session.commit()


def test_filesize_names_binary_units():
    """161.1 MiB is 168,925,000 bytes: powers of 1024, named MiB (not MB)."""
    assert filesize(168_925_000) == "161.1 MiB"
    assert (filesize(512), filesize(2048), filesize(3 * 1024 ** 3)) == ("512 bytes", "2.0 KiB", "3.0 GiB")
    assert (duration(0.42), duration(12.4), duration(185), duration(7440)) == ("0.4 s", "12 s", "3 min 5 s", "2 h 4 min")


def test_history_tells_posts_size_duration_and_when(app, client, alice):
    """A finished export's row: "Exported posts", how it was delivered, posts, size, duration, UTC <time>."""
    task_id = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, age=timedelta(seconds=12))
    update_task(app, task_id, current=2_000_000, total=2_000_000, result_bytes=168_925_000, delivery="linked")
    page = text_of(client.get("/tasks"))
    row = page[page.index(f'data-task-row="{task_id}"'):]
    row = row[:row.index("</tr>")]
    assert "Exported posts" in row and "Exporting posts" not in row
    assert "Done — emailed you a link" in row and "emailed to you" not in row
    assert "2,000,000 posts · 161.1 MiB · took 12 s" in row
    ended = re.search(r'<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)" data-local-time>'
                      r'(\d{4}-\d\d-\d\d \d\d:\d\d UTC)</time>', row.split(f'data-task-finished="{task_id}"')[1])
    assert ended and ended.group(1)[:10] == ended.group(2)[:10]
    assert "style=" not in page  # a strict CSP allows no inline styles: widths come from data-width
    assert 'data-width="100"' in row


def test_attached_export_says_emailed_to_you(app, client, alice):
    """Only an attached export says "emailed to you"; one whose email failed says what happened."""
    attached = make_task(app, alice.id, TaskStatus.FINISHED, progress=100)
    update_task(app, attached, delivery="attached")
    failed_mail = make_task(app, alice.id, TaskStatus.FINISHED, progress=100,
                            message="Your export is ready to download, but the email could not be sent (x).")
    page = text_of(client.get("/tasks"))
    assert page.count("Done — emailed to you") == 1
    assert "Done. Your export is ready to download, but the email could not be sent (x)." in page
    assert failed_mail in page


def test_try_again_only_while_no_retry_runs(app, client, alice):
    """A canceled export offers "Try again" until another export of the same kind is queued or running."""
    make_task(app, alice.id, TaskStatus.CANCELED, progress=20)
    assert text_of(client.get("/tasks")).count("Try again") == 1
    make_task(app, alice.id, TaskStatus.STARTED, progress=5)
    assert "Try again" not in text_of(client.get("/tasks"))


def test_export_button_estimates_from_past_exports(app, client, alice, make_posts):
    """With a past export of 1,000 posts in 2 s, a profile of 500 posts says it takes about 1 s."""
    make_posts(alice.id, 500)
    page = text_of(client.get("/user/alice"))
    assert "500 posts" in page and "Takes about" not in page  # no history: no guess
    task_id = make_task(app, alice.id, TaskStatus.FINISHED, progress=100, age=timedelta(seconds=2))
    update_task(app, task_id, current=1000, total=1000)
    page = text_of(client.get("/user/alice"))
    assert "Takes about 1.0 s for your 500 posts" in page


def test_post_limit_counts_code_points_and_refuses(app, client, alice, auth):
    """No maxlength (UTF-16 units); 140 emoji are stored whole; 141 are refused with the limit, nothing cut."""
    home = client.get("/index").get_data(as_text=True)
    box = re.search(r"<textarea[^>]*>", home).group(0)
    assert "maxlength" not in box and 'data-max-chars="140"' in box
    assert auth.post("/index", {"post": "😀" * 140}).status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(Post.body)) == "😀" * 140
    response = auth.post("/index", {"post": "😀" * 141})
    assert response.status_code == 400
    assert "A post has at most 140 characters. This one has 141." in text_of(response)
    assert count(app, Post) == 1


def test_pages_have_favicon_skip_link_and_credential_autocomplete(client):
    """Every page links a favicon that exists and has a skip link; credential fields say what they hold."""
    login = client.get("/auth/login").get_data(as_text=True)
    icon = re.search(r'<link rel="icon"[^>]*href="([^"]+)"', login).group(1)
    assert client.get(icon).status_code == 200
    assert 'href="#content">Skip to main content</a>' in login
    assert re.search(r'<input[^>]*autocomplete="current-password"[^>]*type="password"|'
                     r'<input[^>]*type="password"[^>]*autocomplete="current-password"', login)
    register = client.get("/auth/register").get_data(as_text=True)
    assert register.count('autocomplete="new-password"') == 2
