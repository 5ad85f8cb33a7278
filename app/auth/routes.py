"""Account views."""
import secrets
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user, user_loaded_from_cookie
from werkzeug.wrappers import Response

from app.auth import bp
from app.auth.forms import LoginForm, RegistrationForm
from app.auth.passwords import check_password, set_password
from app.extensions import db
from app.extensions import login as login_manager
from app.models import User
from app.sockets import disconnect_session_sockets


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths may be a post-login destination."""
    if not target or urlsplit(target).netloc or urlsplit(target).scheme or not target.startswith("/"):
        return url_for("main.index")
    return target


def name_session_sockets(*_args: object, **_kwargs: object) -> None:
    """Give this login session a key that names its sockets, so logout can close them."""
    session["sock_key"] = secrets.token_urlsafe(16)


# A session restored from the "remember me" cookie is a new login session too.
user_loaded_from_cookie.connect(name_session_sockets)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    """Log a user in."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(sa.select(User).where(User.username == form.username.data))
        if user is None or not check_password(user, form.password.data):
            flash("Invalid username or password.", "danger")
            return render_template("auth/login.html", title="Sign in", form=form), 401
        login_user(user, remember=form.remember_me.data)
        name_session_sockets()
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", title="Sign in", form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    """Log out (CSRFProtect has checked the token) and close the sockets this session opened."""
    disconnect_session_sockets(session.pop("sock_key", None))
    logout_user()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register() -> str | Response:
    """Create an account."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        user = User(username=form.username.data, email=form.email.data)
        set_password(user, form.password.data)
        db.session.add(user)
        try:
            db.session.commit()
        except sa.exc.IntegrityError:
            # Someone registered the same name between the check and the insert.
            db.session.rollback()
            flash("That username or email address was just taken. Please choose another.", "danger")
            return render_template("auth/register.html", title="Register", form=form), 409
        flash("Welcome to Microblog! You can sign in now.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/register.html", title="Register", form=form), 400 if form.errors else 200


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    """Pages redirect to the login form; the JSON API answers 401."""
    if request.path.startswith("/api/"):
        return jsonify(error="Unauthorized", message="Log in first."), 401
    flash(login_manager.login_message, "info")
    if request.method != "GET":
        # A button clicked after the session ended: its URL answers POST only, so do not come back to it.
        return redirect(url_for("auth.login"))
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))
