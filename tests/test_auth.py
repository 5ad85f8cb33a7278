"""Accounts: register, log in, log out, and what anonymous visitors may reach.

Each test gets a fresh database (twice: SQLite and PostgreSQL); refusals that share one set-up run
as subtests, so each case is still reported on its own.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from app.models import User
from tests.conftest import csrf_token
from tests.factories import count, find_user, text_of

CSRF_MESSAGE = "The form expired or was not sent from this site"


def test_register_success(app, client, auth):
    """The form has its fields; a new account redirects to login, is stored hashed, and can log in."""
    form = client.get("/auth/register").get_data(as_text=True)
    for field in ("username", "email", "password", "password2", "csrf_token"):
        assert f'name="{field}"' in form

    response = auth.register("alice", password="s3cret-words")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    user = find_user(app, "alice")
    assert user is not None and user.email == "alice@example.com"
    # Stored as a salted hash: never the password itself.
    assert user.password_hash and "s3cret-words" not in user.password_hash
    assert user.check_password("s3cret-words") and not user.check_password("wrong-words")
    assert "Welcome to Microblog" in text_of(client.get("/auth/login"))

    assert auth.login("alice", "s3cret-words").status_code == 302
    assert client.get("/index").status_code == 200


def test_register_duplicate_refused(app, make_user, auth, subtests):
    """A taken username or email is refused with its message, and no second account appears."""
    make_user("alice")
    cases = [
        ({"username": "alice", "email": "other@example.com"}, "That username is taken. Please choose another."),
        ({"username": "alicia", "email": "alice@example.com"}, "That email address already has an account."),
    ]
    for fields, message in cases:
        with subtests.test(message):
            response = auth.register(**fields)
            assert response.status_code == 400
            assert message in text_of(response)
            assert count(app, User) == 1


def test_register_invalid_refused(app, auth, subtests):
    """Each invalid form is refused (400) with a clear message and stores nothing."""
    cases = [
        ({"password": "password123", "password2": "password124"}, "The two passwords do not match."),
        ({"email": "not-an-email"}, "Invalid email address."),
        ({"password": "short1", "password2": "short1"}, "Field must be between 8 and 128 characters long."),
        ({"username": "bad name!"}, "Use letters, digits, dots, dashes and underscores only."),
        ({"username": ""}, "This field is required."),
    ]
    for fields, message in cases:
        with subtests.test(message):
            response = auth.register(**{"username": "alice", **fields})
            assert response.status_code == 400
            assert message in text_of(response)
            assert count(app, User) == 0


def test_register_without_csrf_refused(app, client):
    """A registration posted without the CSRF token is a 400 and stores nothing."""
    response = client.post("/auth/register", data={
        "username": "alice", "email": "alice@example.com", "password": "password123", "password2": "password123",
    })
    assert response.status_code == 400
    assert CSRF_MESSAGE in text_of(response)
    assert count(app, User) == 0


def test_login_success_redirects_home(client, make_user, auth):
    """The right password logs in and goes to the home page; the forms then send the user home."""
    make_user("alice")
    response = auth.login("alice")
    assert response.status_code == 302
    assert response.headers["Location"] == "/index"
    assert "Hi, alice!" in text_of(client.get("/index"))
    assert client.get("/auth/login").headers["Location"] == "/index"
    assert client.get("/auth/register").headers["Location"] == "/index"


def test_login_refused(client, make_user, auth, subtests):
    """A wrong password or unknown user is a 401 with one message that reveals neither; no session."""
    make_user("alice")
    for username, password in (("alice", "wrong-password"), ("nobody", "password123")):
        with subtests.test(username=username):
            response = auth.login(username, password)
            assert response.status_code == 401
            assert "Invalid username or password." in text_of(response)
            assert client.get("/index").status_code == 302
    with subtests.test("without CSRF token"):
        response = client.post("/auth/login", data={"username": "alice", "password": "password123"})
        assert response.status_code == 400
        assert client.get("/index").status_code == 302
    with subtests.test("NUL character in the username"):
        # PostgreSQL cannot compare strings holding NUL: the query must never see one (SQLite would).
        response = auth.login("ali\x00ce", "password123")
        assert response.status_code in (400, 401)
        assert client.get("/index").status_code == 302


def test_remember_me_sets_cookie(app, client, make_user, auth):
    """"Remember me" keeps the user signed in after the browser closes; logout forgets it; unticked, nothing."""
    make_user("alice")
    auth.login("alice", remember_me=False)
    assert client.get_cookie("remember_token") is None
    auth.logout()
    auth.login("alice", remember_me=True)
    cookie = client.get_cookie("remember_token")
    assert cookie is not None and cookie.value
    assert cookie.expires is not None
    # The browser reopened: only the remember cookie is left, and the user is still signed in.
    reopened = app.test_client()
    reopened.set_cookie("remember_token", cookie.value)
    assert "Hi, alice!" in text_of(reopened.get("/index"))
    # Logging out forgets the browser.
    auth.logout()
    assert client.get_cookie("remember_token") is None


def test_login_follows_local_next(client, make_user, auth):
    """Sent to log in from a page, the user lands back on that page."""
    make_user("alice")
    response = client.get("/explore")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/explore"
    response = auth.post("/auth/login?next=/explore", {"username": "alice", "password": "password123"})
    assert response.headers["Location"] == "/explore"


def test_login_after_refused_action_lands_on_a_page(client, make_user, auth, subtests):
    """Clicking a button (a POST) while logged out, then logging in, lands on a working page, not a 405."""
    make_user("alice")
    for action in ("/export_posts", "/auth/logout", "/tasks/abc/cancel"):
        with subtests.test(action=action):
            client.delete_cookie("session")
            response = client.post(action, data={"csrf_token": csrf_token(client)})
            assert response.status_code == 302
            login_page = response.headers["Location"]
            assert login_page.startswith("/auth/login")
            response = auth.post(login_page, {"username": "alice", "password": "password123"})
            assert response.status_code == 302
            assert client.get(response.headers["Location"]).status_code == 200


def test_login_refuses_open_redirect(make_user, auth, subtests):
    """A `next` that leaves the site is ignored; tricky spellings never resolve to another host."""
    make_user("alice")
    for target in ("http://evil.example/", "https://evil.example/index", "//evil.example/", "\\\\evil.example/",
                   "javascript:alert(1)"):
        with subtests.test(target=target):
            auth.logout()
            response = auth.post("/auth/login", {"username": "alice", "password": "password123"},
                                 query_string={"next": target})
            assert response.status_code == 302
            assert response.headers["Location"] == "/index"
    for target in ("/\\evil.example/", "/\t/evil.example/", "/%2F%2Fevil.example/"):
        with subtests.test(target=target):
            auth.logout()
            response = auth.post("/auth/login", {"username": "alice", "password": "password123"},
                                 query_string={"next": target})
            location = response.headers["Location"]
            # Browsers turn `\` into `/` and drop tabs: a raw one would make `//evil.example`.
            assert location.startswith("/") and not location.startswith("//")
            assert "\\" not in location and "\t" not in location
            assert urlsplit(urljoin("http://localhost/auth/login", location)).netloc == "localhost"


def test_logout(client, make_user, auth):
    """Logging out ends the session and goes to the login page."""
    make_user("alice")
    auth.login("alice")
    response = auth.logout()
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert "You have been logged out." in text_of(client.get("/auth/login"))
    assert client.get("/index").status_code == 302


def test_logout_needs_post_and_csrf(client, make_user, auth):
    """A GET (a link, an image) or a POST without the token (another site's form) keeps the session."""
    make_user("alice")
    auth.login("alice")
    assert client.get("/auth/logout").status_code == 405
    response = client.post("/auth/logout")
    assert response.status_code == 400
    assert CSRF_MESSAGE in text_of(response)
    assert client.get("/index").status_code == 200


def test_anonymous_visitors_are_sent_to_login(client, make_user, subtests):
    """Pages and actions send an anonymous visitor to the login form; the JSON API answers 401 JSON."""
    make_user("alice")
    for path in ("/", "/index", "/explore", "/user/alice", "/tasks", "/tasks/abc/download"):
        with subtests.test(page=path):
            response = client.get(path)
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/auth/login?next=")
            assert "Please log in to access this page." in text_of(client.get(response.headers["Location"]))
    for path in ("/export_posts", "/tasks/abc/cancel"):
        with subtests.test(action=path):
            response = client.post(path, data={"csrf_token": csrf_token(client)})
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/auth/login")
    for path in ("/api/tasks", "/api/tasks/abc"):
        with subtests.test(api=path):
            response = client.get(path)
            assert response.status_code == 401
            assert response.is_json and response.get_json()["error"] == "Unauthorized"
