"""Account views."""
import sqlalchemy as sa
from flask import flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, user_loaded_from_cookie
from werkzeug.wrappers import Response

from app.auth import bp
from app.auth.forms import LoginForm, RegistrationForm
from app.auth.passwords import check_login, set_password
from app.extensions import db
from app.extensions import login as login_manager
from app.limits import login_per_account, login_per_address, register_per_address
from app.models import User
from app.security import safe_next
from app.sessions import end_current_session, start_session


def name_session_sockets(_app: object, user: User, **_kwargs: object) -> None:
    """A browser back through its remember-me cookie: its sockets are named by that login session."""
    session["sock_key"] = user.session_id


# A session restored from the "remember me" cookie is a new login session too.
user_loaded_from_cookie.connect(name_session_sockets)


@bp.route("/login", methods=["GET", "POST"])
@login_per_account
@login_per_address
def login() -> str | Response:
    """Log a user in."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(sa.select(User).where(sa.func.lower(User.username) == form.username.data.lower()))
        if not check_login(user, form.password.data):
            flash(_("Invalid username or password."), "danger")
            return render_template("auth/login.html", title=_("Sign in"), form=form), 401
        start_session(user, remember=form.remember_me.data)
        return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", title=_("Sign in"), form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    """Log out (CSRFProtect has checked the token) and close the sockets this session opened."""
    end_current_session(current_user)
    flash(_("You have been logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
@register_per_address
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
            flash(_("That username or email address was just taken. Please choose another."), "danger")
            return render_template("auth/register.html", title=_("Register"), form=form), 409
        flash(_("Welcome to Microblog! You can sign in now."), "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/register.html", title=_("Register"), form=form), 400 if form.errors else 200


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    """Pages redirect to the login form; the JSON API answers 401."""
    if request.path.startswith("/api/"):
        return jsonify(error="Unauthorized", message=_("Log in first.")), 401
    flash(login_manager.login_message, "info")
    if request.method != "GET":
        # A button clicked after the session ended: its URL answers POST only, so do not come back to it.
        return redirect(url_for("auth.login"))
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))
