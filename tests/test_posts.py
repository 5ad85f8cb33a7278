"""Posts: publishing from the home page, profiles (paginated, newest first), explore, the export button."""
from __future__ import annotations

import pytest

from app.models import Post, TaskStatus
from tests.conftest import csrf_token
from tests.factories import count, make_task, post_bodies, set_status, shown, text_of

PER_PAGE = 5  # POSTS_PER_PAGE in the test app
EXPORT_BUTTON = "Export your posts"


@pytest.fixture
def alice(make_user, auth):
    """Alice, registered and logged in."""
    user = make_user("alice")
    auth.login("alice")
    return user


def test_publish_post(app, client, auth, alice, subtests):
    """A post of 1 to 140 characters is stored, announced and shown on the home page."""
    for stored, body in enumerate(["x", "a" * 140, "é" * 140], start=1):
        with subtests.test(length=len(body)):
            response = auth.post("/index", {"post": body})
            assert response.status_code == 302
            assert response.headers["Location"] == "/index"
            assert count(app, Post, user_id=alice.id, body=body) == 1
            assert count(app, Post) == stored
            page = text_of(client.get("/index"))
            assert "Your post is now live!" in page
            assert post_bodies(page)[0] == body


def test_publish_post_with_line_break(app, auth, alice):
    """140 characters with a line break, as the browser's counter (maxlength=140) allows, are accepted.

    Browsers count a line break as one character but send it as CR LF.
    """
    typed = "a" * 69 + "\n" + "b" * 70
    response = auth.post("/index", {"post": typed.replace("\n", "\r\n")})
    assert response.status_code == 302
    assert count(app, Post, body=typed) == 1


def test_publish_invalid_post_refused(app, auth, alice, subtests):
    """An empty or too long post is refused (400) with its message, and nothing is stored."""
    for body, message in (("", "A post cannot be empty."), ("   ", "A post cannot be empty."),
                          ("a" * 141, "A post has at most 140 characters.")):
        with subtests.test(length=len(body)):
            response = auth.post("/index", {"post": body})
            assert response.status_code == 400
            assert message in text_of(response)
            assert count(app, Post) == 0
    with subtests.test("NUL character"):
        # PostgreSQL cannot store NUL (SQLite would): refused the same way on both, never a 500.
        assert auth.post("/index", {"post": "a\x00b"}).status_code == 400
        assert count(app, Post) == 0


def test_publish_without_valid_csrf_refused(app, client, alice):
    """A post with a missing or forged CSRF token (another site's form) is a 400 and stores nothing."""
    assert client.post("/index", data={"post": "hello"}).status_code == 400
    csrf_token(client)
    assert client.post("/index", data={"post": "hello", "csrf_token": "forged"}).status_code == 400
    assert count(app, Post) == 0


def test_home_shows_own_posts_newest_first(client, auth, alice):
    """Posts published one after another show newest first on the home page."""
    for body in ("first", "second", "third"):
        auth.post("/index", {"post": body})
    assert post_bodies(text_of(client.get("/index"))) == ["third", "second", "first"]


def test_profile_newest_first_paginated(client, alice, make_posts):
    """A profile shows POSTS_PER_PAGE posts a page, newest first; "Older posts" leads on (keyset links)."""
    from tests.test_pagination import links

    make_posts(alice.id, 12)
    first = client.get("/user/alice")
    assert first.status_code == 200
    assert post_bodies(text_of(first)) == [f"Seed post {i} of 12" for i in (12, 11, 10, 9, 8)]
    assert "Page 1 of" not in text_of(first)  # no COUNT(*) behind the page
    second = client.get(links(first)["Older posts"])
    assert post_bodies(text_of(second)) == [f"Seed post {i} of 12" for i in (7, 6, 5, 4, 3)]
    third = client.get(links(second)["Older posts"])
    assert post_bodies(text_of(third)) == ["Seed post 2 of 12", "Seed post 1 of 12"]
    assert "Older posts" not in links(third)


def test_profile_unknown_user_404(client, alice, subtests):
    """A profile of a user who does not exist is a 404, however odd the name."""
    for name in ("nobody", "ALICE", "%00", "a" * 100):
        with subtests.test(name=name):
            response = client.get(f"/user/{name}")
            assert response.status_code == 404
            assert EXPORT_BUTTON not in text_of(response)


def test_profile_shows_only_that_users_posts(client, alice, make_user, make_posts):
    """Bob's profile shows Bob's posts, not Alice's; Alice's shows hers."""
    bob = make_user("bob")
    make_posts(alice.id, 2)
    make_posts(bob.id, 1)
    assert post_bodies(text_of(client.get("/user/bob"))) == ["Seed post 1 of 1"]
    assert post_bodies(text_of(client.get("/user/alice"))) == ["Seed post 2 of 2", "Seed post 1 of 2"]


def test_explore_shows_everyones_posts(client, auth, alice, make_user, make_posts):
    """Explore shows every user's posts, newest first, with their authors, paginated."""
    from tests.test_pagination import links

    make_user("bob")
    make_posts(alice.id, PER_PAGE)
    auth.post("/index", {"post": "alice speaks"})
    auth.logout()
    auth.login("bob")
    auth.post("/index", {"post": "bob answers"})
    page = text_of(client.get("/explore"))
    assert post_bodies(page)[:2] == ["bob answers", "alice speaks"]
    assert 'href="/user/alice"' in page and 'href="/user/bob"' in page
    assert len(post_bodies(page)) == PER_PAGE
    second = client.get(links(client.get("/explore"))["Older posts"])
    assert len(post_bodies(text_of(second))) == 2
    assert "Older posts" not in links(second)


def test_export_button_only_for_owner(client, alice, make_user):
    """Alice sees the "Export your posts" form button on her profile, not on Bob's."""
    make_user("bob")
    page = client.get("/user/alice").get_data(as_text=True)
    assert "No posts yet." in page
    assert shown(page, "export-form") and not shown(page, "posts-in-progress")
    start = page.index('<form action="/export_posts" method="post"')
    form = page[start:page.index("</form>", start)]
    assert 'name="csrf_token"' in form
    assert f'<button type="submit" class="btn btn-primary">{EXPORT_BUTTON}</button>' in form
    bobs = client.get("/user/bob").get_data(as_text=True)
    assert EXPORT_BUTTON not in bobs and not shown(bobs, "export-form")


def test_export_button_hidden_while_export_active(app, client, alice, make_user, subtests):
    """While Alice's export is queued or running the profile says so; once it ends the button is back."""
    bob = make_user("bob")
    make_task(app, bob.id, TaskStatus.STARTED)  # someone else's export changes nothing for Alice
    assert shown(client.get("/user/alice").get_data(as_text=True), "export-form")
    task_id = make_task(app, alice.id, TaskStatus.QUEUED)
    for status in TaskStatus:
        with subtests.test(status=status.value):
            set_status(app, task_id, status)
            page = client.get("/user/alice").get_data(as_text=True)
            active = status in TaskStatus.active()
            assert shown(page, "export-form") is not active
            assert shown(page, "posts-in-progress") is active
