"""Headers on every page, one safe-redirect rule for every `next`, and malformed input as 4xx."""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

from app import create_app
from config import Config
from tests.conftest import AuthActions
from tests.factories import make_task, text_of

EVIL_NEXTS = ["//evil.example", "/\\evil.example", "/\t/evil.example", "https:evil.example", "https://evil.example",
              "/%2F/evil.example", "%2F%2Fevil.example", "/%5Cevil.example", "/%09/evil.example",
              "/x\r\nLocation: http://evil.example", "/x%0d%0aSet-Cookie:a=b", "javascript:alert(1)", "\\\\evil.example"]


@pytest.fixture
def alice_in(app, make_user):
    """A browser logged in as alice."""
    user = make_user("alice")
    client = app.test_client()
    assert AuthActions(client).login().status_code == 302
    return client, user


def assert_on_site(response) -> None:
    """A redirect that stays on this site (or a 4xx), never a 500."""
    assert response.status_code < 500
    if response.status_code in (301, 302, 303, 307, 308):
        location = response.headers["Location"]
        assert "\r" not in location and "\n" not in location
        absolute = urljoin("http://localhost/here", location)
        assert urlsplit(absolute).netloc == "localhost", location
        assert not location.startswith("//") and "\\" not in location


def test_headers_on_pages(client, alice_in, subtests):
    """Every page: CSP without inline script and with frame-ancestors 'none', DENY, nosniff, a referrer
    policy, and no-store where private."""
    browser, _ = alice_in
    for who, path in ((client, "/auth/login"), (browser, "/index"), (browser, "/tasks"), (browser, "/auth/account"),
                      (browser, "/user/alice"), (browser, "/no/such/page")):
        with subtests.test(path):
            response = who.get(path)
            csp = response.headers["Content-Security-Policy"]
            script_src = [d for d in csp.split(";") if d.strip().startswith(("script-src", "default-src"))]
            assert script_src and not any("unsafe-inline" in d for d in script_src)
            assert "frame-ancestors 'none'" in csp
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"]
            assert "no-store" in response.headers["Cache-Control"]
            assert "Strict-Transport-Security" not in response.headers
    with subtests.test("api"):
        response = browser.get("/api/tasks")
        assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["Cache-Control"] == "no-store"


def test_hsts_when_public_url_is_https(database_url, redis_server, monkeypatch):
    """Served as https, pages ask the browser to stay on https."""
    monkeypatch.setenv("PUBLIC_URL", "https://blog.example")
    app = create_app(Config(), TESTING=True, SECRET_KEY="t", SQLALCHEMY_DATABASE_URI=database_url,
                     SOCKETIO_MESSAGE_QUEUE=None, REDIS_URL=redis_server.url)
    assert "max-age=" in app.test_client().get("/auth/login").headers["Strict-Transport-Security"]


def test_every_next_stays_on_site(app, make_user, subtests):
    """Login's ?next= and the cancel/export forms' next field: off-site or malformed targets go home."""
    user = make_user("alice")
    for target in EVIL_NEXTS:
        with subtests.test(login=target):
            client = app.test_client()
            response = AuthActions(client).post("/auth/login", {"username": "alice", "password": "password123"},
                                                query_string={"next": target})
            assert_on_site(response)
        with subtests.test(cancel=target):
            client = app.test_client()
            auth = AuthActions(client)
            auth.login()
            task_id = make_task(app, user.id)
            assert_on_site(auth.post(f"/tasks/{task_id}/cancel", {"next": target}))
    with subtests.test("a same-site next is kept"):
        client = app.test_client()
        response = AuthActions(client).post("/auth/login", {"username": "alice", "password": "password123"},
                                            query_string={"next": "/explore?page=2"})
        assert response.headers["Location"] == "/explore?page=2"


def test_absurd_page_numbers_are_4xx(alice_in, subtests):
    """page=10**20 and friends: a 4xx page, never a 500 (SQLite overflow, PostgreSQL out of range)."""
    browser, _ = alice_in
    for page in ("99999999999999999999", "9223372036854775807", "-5", "0"):
        with subtests.test(path="/tasks", page=page):
            assert 400 <= browser.get("/tasks", query_string={"page": page}).status_code < 500
    # Posts are paged by keyset cursors (`before`/`after`: a post's timestamp and id): absurd ones too.
    for path in ("/index", "/explore", "/user/alice"):
        for arg in ("before", "after"):
            for cursor in ("99999999999999999999", "2026-01-01T00:00:00.000000_99999999999999999999",
                           "99999-01-01T00:00:00_1", "2026-01-01T00:00:00_-5", "x\r\nSet-Cookie: a=b"):
                with subtests.test(path=path, arg=arg, cursor=cursor):
                    assert 400 <= browser.get(path, query_string={arg: cursor}).status_code < 500


def test_body_over_the_limit_is_413_and_not_echoed(app, alice_in):
    """A body over MAX_CONTENT_LENGTH is refused unread (413 with a message); an over-long post is
    not echoed back beyond its limit."""
    browser, _ = alice_in
    auth = AuthActions(browser)
    app.config["MAX_CONTENT_LENGTH"] = 200_000
    response = auth.post("/index", {"post": "x" * 300_000})
    assert response.status_code == 413
    assert "too large" in text_of(response) and len(response.get_data()) < 50_000
    response = auth.post("/index", {"post": "y" * 150_000})
    assert response.status_code == 400
    assert "y" * 1001 not in response.get_data(as_text=True)  # enough to edit a too-long post, no more
