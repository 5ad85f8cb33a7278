"""Keyset pagination of home, explore and profiles: "Older posts"/"Newer posts" links, every post once."""
from __future__ import annotations

import html
import re

import pytest

from tests.factories import post_bodies, text_of

PER_PAGE = 5  # POSTS_PER_PAGE in the test app
LINK_RE = re.compile(r'<a class="page-link" rel="(?:prev|next)" href="([^"#]+)">(Older posts|Newer posts)</a>')


def links(response) -> dict[str, str]:
    """The pagination links of a page, by label."""
    return {label: html.unescape(href) for href, label in LINK_RE.findall(response.get_data(as_text=True))}


def walk(client, url: str, label: str) -> tuple[list[list[str]], str]:
    """Follow `label` links from url to the end; the bodies of each page and the last page's url."""
    pages = []
    while True:
        response = client.get(url)
        assert response.status_code == 200, url
        pages.append(post_bodies(text_of(response)))
        following = links(response).get(label)
        if following is None:
            return pages, url
        url = following


@pytest.fixture
def alice(make_user, auth):
    """Alice, registered and logged in."""
    user = make_user("alice")
    auth.login("alice")
    return user


@pytest.mark.parametrize("path", ["/user/alice", "/index", "/explore"])
def test_every_post_once_in_both_directions(client, alice, make_posts, path):
    """Older links reach the oldest post, Newer links come back, every post exactly once each way."""
    make_posts(alice.id, 23)
    expected = [f"Seed post {i} of 23" for i in range(23, 0, -1)]
    first = client.get(path)
    assert "Newer posts" not in links(first) and "Page 1 of" not in text_of(first)
    down, last_url = walk(client, path, "Older posts")
    assert [len(p) for p in down] == [5, 5, 5, 5, 3]
    assert sum(down, []) == expected
    up, _ = walk(client, last_url, "Newer posts")
    assert sum(reversed(up), []) == expected
    assert all(len(p) == PER_PAGE for p in up[1:])


def test_posts_with_equal_timestamps_page_by_id(app, client, alice):
    """Posts made in the same microsecond are neither skipped nor repeated at a page edge."""
    from datetime import datetime

    from app.extensions import db
    from app.models import Post

    with app.app_context():
        same = datetime(2026, 1, 1, 12, 0, 0, 123456)
        db.session.add_all([Post(body=f"tie {i}", timestamp=same, user_id=alice.id) for i in range(12)])
        db.session.commit()
    down, last_url = walk(client, "/user/alice", "Older posts")
    assert sum(down, []) == [f"tie {i}" for i in range(11, -1, -1)]
    up, _ = walk(client, last_url, "Newer posts")
    assert sum(reversed(up), []) == [f"tie {i}" for i in range(11, -1, -1)]


def test_short_profile_has_no_pagination(client, alice, make_posts):
    """A profile that fits on one page shows no page links and no count."""
    make_posts(alice.id, PER_PAGE)
    page = client.get("/user/alice")
    assert links(page) == {} and 'aria-label="Pages"' not in page.get_data(as_text=True)


def test_malformed_cursor_is_400(client, alice, make_posts, subtests):
    """A hand-edited page link is the client's error (400), never a server error."""
    make_posts(alice.id, 3)
    for query in ("before=x", "before=", "after=2026-01-01T00:00:00_", "before=2026-13-01T00:00:00_1",
                  "before=2026-01-01T00:00:00_-1", "before=2026-01-01T00:00:00_99999999999999",
                  "after=2026-01-01_1e3", "before=%00_1", "before=2026-01-01T00:00:00_1&after=2026-01-01T00:00:00_1"):
        for path in ("/user/alice", "/explore", "/index"):
            with subtests.test(path=path, query=query):
                assert client.get(f"{path}?{query}").status_code == 400


def test_cursor_past_the_end_is_empty_page(client, alice, make_posts):
    """A cursor older than every post shows no posts (not an error) and a way back."""
    make_posts(alice.id, 3)
    response = client.get("/user/alice?before=2000-01-01T00:00:00.000000_1")
    assert response.status_code == 200
    assert post_bodies(text_of(response)) == [] and "Newer posts" in links(response)
