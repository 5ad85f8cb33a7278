"""The rest of an account's life: password reset by email, and deleting the account.

A reset token is signed (SECRET_KEY), lasts an hour, and names a fingerprint of the password hash
it was issued against: once the password changes, every earlier token is dead (single use) without
a table of tokens.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app, flash, redirect, render_template, url_for
from flask_babel import force_locale, gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from flask_mail import Message
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from app.auth import bp
from app.auth.passwords import check_password, set_password
from app.extensions import db, mail, socketio
from app.i18n import N_, current_language
from app.limits import limiter
from app.models import Task, TaskStatus, User
from app.sessions import end_current_session, end_other_sessions

log = logging.getLogger(__name__)

RESET_MAX_AGE = 3600  # seconds a reset link works
RESET_SALT = "password-reset"
SAME_ANSWER = N_("If that address has an account, an email with a link to reset its password is on its way.")


class ResetRequestForm(FlaskForm):
    """The address of the account."""

    email = StringField(_l("Email"), validators=[DataRequired(), Email(), Length(max=120)])
    submit = SubmitField(_l("Request password reset"))


class ResetPasswordForm(FlaskForm):
    """The new password twice."""

    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(min=8, max=128)])
    password2 = PasswordField(_l("Repeat new password"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords do not match.")),
    ])
    submit = SubmitField(_l("Reset password"))


def _serializer() -> URLSafeTimedSerializer:
    """Signs reset tokens with the deployment's SECRET_KEY."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=RESET_SALT)


def _fingerprint(user: User) -> str:
    """Changes whenever the password does, so a used token cannot be used again."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def reset_token(user: User) -> str:
    """A signed token for resetting this user's current password."""
    return _serializer().dumps({"user": user.id, "pw": _fingerprint(user)})


def user_of_reset_token(token: str) -> User | None:
    """The user a valid, unexpired, unused token was issued to; else None."""
    try:
        data = _serializer().loads(token, max_age=RESET_MAX_AGE)
    except (SignatureExpired, BadSignature):
        return None
    user = db.session.get(User, data.get("user")) if isinstance(data, dict) else None
    if user is None or data.get("pw") != _fingerprint(user):
        return None
    return user


def _send_reset_email(app: Flask, user_id: int, language: str = "en") -> None:
    """Mail the reset link, off the request: the answer's timing must not tell that the address exists."""
    with app.app_context(), force_locale(language):  # the requester's language: there is no request here
        user = db.session.get(User, user_id)
        link = f"{app.config['PUBLIC_URL']}/auth/reset_password/{reset_token(user)}"
        msg = Message(_("[Microblog] Reset your password"), recipients=[user.email],
                      body=render_template("email/reset_password.txt", user=user, link=link),
                      html=render_template("email/reset_password.html", user=user, link=link))
        try:
            mail.send(msg)
        except Exception:  # SMTP down: the user can ask again; nothing else depends on this mail
            log.exception("could not send the password reset email of user %s", user_id)


@bp.route("/reset_password_request", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RESET_RATE_LIMIT"], methods=["POST"], scope="reset",
               error_message=lambda: _("Too many password reset requests from your network address. Please wait a while."))
def reset_password_request() -> str | Response:
    """Ask for a reset link; the answer is the same whether or not the address has an account."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = ResetRequestForm()
    if form.validate_on_submit():
        user = db.session.scalar(sa.select(User).where(sa.func.lower(User.email) == form.email.data.lower()))
        if user is not None:
            socketio.start_background_task(_send_reset_email, current_app._get_current_object(), user.id,
                                           current_language())
        flash(_(SAME_ANSWER), "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_password_request.html", title=_("Reset password"), form=form), \
        400 if form.errors else 200


@bp.route("/reset_password/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> str | Response | tuple[str, int]:
    """Set a new password from a reset link; every session of the user ends."""
    user = user_of_reset_token(token)
    if user is None:
        message = _("This password reset link is invalid, expired or already used. Please ask for a new one.")
        return render_template("errors/error.html", code=400, message=message), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        set_password(user, form.password.data)
        db.session.commit()
        end_other_sessions(user.id)
        flash(_("Your password has been reset. You can sign in now."), "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", title=_("Reset password"), form=form), \
        400 if form.errors else 200


class DeleteAccountForm(FlaskForm):
    """The password, to confirm."""

    # Its own id: the account page also has the change-password form's "password" field.
    password = PasswordField(_l("Your password"), id="delete-password", validators=[DataRequired()])
    submit = SubmitField(_l("Delete my account"))


@bp.route("/delete_account", methods=["POST"])
@login_required
def delete_account() -> Response | tuple[str, int]:
    """Delete the user with their posts, tasks, export files and sessions; close their sockets."""
    form = DeleteAccountForm()
    user = current_user._get_current_object()
    if not form.validate_on_submit() or not check_password(user, form.password.data):
        message = _("The account was not deleted: the password is not right.")
        return render_template("errors/error.html", code=403, message=message), 403
    if db.session.scalar(sa.select(Task.id).where(Task.user_id == user.id, Task.status.in_(TaskStatus.active()))):
        # A running job would write a file after we removed the folder: let it end first.
        message = _("A task of yours is still running: wait for it to end (or cancel it), then delete the account.")
        return render_template("errors/error.html", code=409, message=message), 409
    user_id = user.id
    end_other_sessions(user_id, keep=user.session_id)
    end_current_session(user)
    db.session.execute(sa.delete(User).where(User.id == user_id))  # posts, tasks, sessions: ON DELETE CASCADE
    db.session.commit()
    _remove_export_files(user_id)
    flash(_("Your account and everything in it have been deleted."), "info")
    return redirect(url_for("auth.login"), code=303)


def _remove_export_files(user_id: int) -> None:
    """Every export file of the user (they all live in EXPORT_DIR/<user id>/)."""
    root = Path(current_app.config["EXPORT_DIR"]).resolve()
    folder = (root / str(user_id)).resolve()
    if folder.parent == root and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
