"""Sessions that really end: replayed cookies after logout, log out everywhere, password change,
cookie flags, and a fresh session (and CSRF token) at every login."""
from __future__ import annotations

from app import create_app
from config import Config
from app.models import UserSession
from tests.conftest import AuthActions, csrf_token
from tests.factories import count, text_of


def logged_in(app, username: str = "alice", remember: bool = False):
    """A new browser, logged in through the form."""
    client = app.test_client()
    auth = AuthActions(client)
    assert auth.login(username, remember_me=remember).status_code == 302
    return client, auth


def replay(app, name: str, value: str):
    """A fresh browser that sends only one stolen cookie."""
    thief = app.test_client()
    thief.set_cookie(name, value)
    return thief


def test_replayed_session_cookie_after_logout_logs_nobody_in(app, make_user):
    """A copy of the session cookie works before logout and not after it."""
    make_user("alice")
    client, auth = logged_in(app)
    stolen = client.get_cookie("session").value
    assert replay(app, "session", stolen).get("/index").status_code == 200
    auth.logout()
    thief = replay(app, "session", stolen)
    response = thief.get("/index")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")
    assert thief.get("/api/tasks").status_code == 401
    assert count(app, UserSession) == 0


def test_replayed_remember_cookie_after_logout_logs_nobody_in(app, make_user):
    """The remember-me cookie is per login (new value each time) and dies with its session."""
    make_user("alice")
    first, first_auth = logged_in(app, remember=True)
    second, _ = logged_in(app, remember=True)
    token = first.get_cookie("remember_token").value
    assert token != second.get_cookie("remember_token").value
    assert "Hi, alice!" in text_of(replay(app, "remember_token", token).get("/index"))
    first_auth.logout()
    assert replay(app, "remember_token", token).get("/index").status_code == 302
    # The other browser's login is untouched.
    assert second.get("/index").status_code == 200


def test_log_out_everywhere(app, make_user):
    """'Log out everywhere' on the account page ends every session of the user, and only theirs."""
    make_user("alice")
    make_user("bob")
    here, here_auth = logged_in(app)
    there, _ = logged_in(app, remember=True)
    remembered = there.get_cookie("remember_token").value
    bob, _ = logged_in(app, "bob")
    page = text_of(here.get("/auth/account"))
    assert "Log out everywhere" in page
    response = here_auth.post("/auth/logout_everywhere")
    assert response.status_code == 303
    for browser in (here, there, replay(app, "remember_token", remembered)):
        assert browser.get("/index").status_code == 302
    assert bob.get("/index").status_code == 200


def test_password_change_ends_other_sessions(app, make_user):
    """A new password keeps this browser signed in and logs every other one out."""
    make_user("alice")
    here, here_auth = logged_in(app)
    there, _ = logged_in(app)
    wrong = here_auth.post("/auth/change_password", {"current_password": "nope-nope", "password": "new-password-1",
                                                     "password2": "new-password-1"})
    assert wrong.status_code == 403 and there.get("/index").status_code == 200
    response = here_auth.post("/auth/change_password", {"current_password": "password123",
                                                        "password": "new-password-1", "password2": "new-password-1"})
    assert response.status_code == 303
    assert here.get("/index").status_code == 200
    assert there.get("/index").status_code == 302
    assert AuthActions(app.test_client()).login("alice", "password123").status_code == 401
    assert AuthActions(app.test_client()).login("alice", "new-password-1").status_code == 302


def test_login_renews_session_and_csrf_token(app, make_user):
    """What a visitor's session held before login (a planted CSRF token) is not kept after it."""
    make_user("alice")
    client = app.test_client()
    before = csrf_token(client)
    AuthActions(client).login()
    after = csrf_token(client)
    assert before != after


def test_cookie_flags(app, make_user, database_url, redis_server, monkeypatch, subtests):
    """Session and remember-me cookies: HttpOnly and SameSite=Lax; Secure when PUBLIC_URL is https."""
    make_user("alice")

    def cookies(application) -> dict[str, str]:
        client = application.test_client()
        response = AuthActions(client).login(remember_me=True)
        return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}

    with subtests.test("http"):
        found = cookies(app)
        for name in ("session", "remember_token"):
            assert "HttpOnly" in found[name] and "SameSite=Lax" in found[name] and "Secure" not in found[name]
    with subtests.test("https"):
        monkeypatch.setenv("PUBLIC_URL", "https://blog.example")
        secure = create_app(Config(), TESTING=True, SECRET_KEY="test", SQLALCHEMY_DATABASE_URI=database_url,
                            SOCKETIO_MESSAGE_QUEUE=None, REDIS_URL=redis_server.url,
                            PASSWORD_HASH_METHOD="pbkdf2:sha256:1000")
        found = cookies(secure)
        for name in ("session", "remember_token"):
            assert "Secure" in found[name] and "HttpOnly" in found[name] and "SameSite=Lax" in found[name]


def test_ending_sessions_closes_their_sockets(app, make_user):
    """Log out everywhere and a password change close the sockets of the sessions they end."""
    make_user("alice")
    here, here_auth = logged_in(app)
    there, _ = logged_in(app)
    sockets = app.extensions["socketio"]
    here_socket = sockets.test_client(app, flask_test_client=here)
    there_socket = sockets.test_client(app, flask_test_client=there)
    assert here_socket.is_connected() and there_socket.is_connected()
    here_auth.post("/auth/change_password", {"current_password": "password123", "password": "new-password-1",
                                             "password2": "new-password-1"})
    assert here_socket.is_connected() and not there_socket.is_connected()
    here_auth.post("/auth/logout_everywhere")
    assert not here_socket.is_connected()
