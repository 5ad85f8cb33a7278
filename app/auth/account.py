"""The account page: change the password, log out everywhere (and, below, delete the account)."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from app.auth import bp
from app.auth.lifecycle import DeleteAccountForm
from app.auth.passwords import check_password, set_password
from app.extensions import db
from app.main.forms import EmptyForm
from app.sessions import end_other_sessions


class ChangePasswordForm(FlaskForm):
    """The current password, and the new one twice."""

    current_password = PasswordField(_l("Current password"), validators=[DataRequired()])
    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(min=8, max=128)])
    password2 = PasswordField(_l("Repeat new password"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords do not match.")),
    ])
    submit = SubmitField(_l("Change password"))


def _account_page(password_form: ChangePasswordForm | None = None, status: int = 200) -> tuple[str, int]:
    """Render the account page with its three forms."""
    return render_template("auth/account.html", title=_("Your account"),
                           password_form=password_form or ChangePasswordForm(), form=EmptyForm(),
                           delete_form=DeleteAccountForm()), status


@bp.route("/account")
@login_required
def account() -> tuple[str, int]:
    """The account page."""
    return _account_page()


@bp.route("/change_password", methods=["POST"])
@login_required
def change_password() -> Response | tuple[str, int]:
    """A new password ends every other login session of the user (and closes their sockets)."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _account_page(form, 400)
    user = current_user._get_current_object()
    if not check_password(user, form.current_password.data):
        form.current_password.errors.append(_("That is not your current password."))
        return _account_page(form, 403)
    set_password(user, form.password.data)
    db.session.commit()
    ended = end_other_sessions(user.id, keep=user.session_id)
    flash(_("Your password was changed; %(ended)s other session(s) were logged out.", ended=ended), "success")
    return redirect(url_for("auth.account"), code=303)


@bp.route("/logout_everywhere", methods=["POST"])
@login_required
def logout_everywhere() -> Response:
    """End every login session of the user, this one included."""
    from app.sessions import end_current_session

    user = current_user._get_current_object()
    end_other_sessions(user.id, keep=user.session_id)
    end_current_session(user)
    flash(_("You have been logged out everywhere."), "info")
    return redirect(url_for("auth.login"), code=303)
