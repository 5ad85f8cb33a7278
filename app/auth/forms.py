"""Account forms."""
import sqlalchemy as sa
from flask_wtf import FlaskForm
from flask_babel import gettext as _, lazy_gettext as _l
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

from app.extensions import db
from app.models import User


class LoginForm(FlaskForm):
    """Username and password."""

    # autocomplete lets password managers fill the right fields (and is an accessibility requirement).
    username = StringField(_l("Username"), validators=[DataRequired()], render_kw={"autocomplete": "username"})
    password = PasswordField(_l("Password"), validators=[DataRequired()], render_kw={"autocomplete": "current-password"})
    remember_me = BooleanField(_l("Remember me"))
    submit = SubmitField(_l("Sign in"))


class RegistrationForm(FlaskForm):
    """A new account."""

    username = StringField(_l("Username"), validators=[
        DataRequired(), Length(max=64),
        Regexp(r"^[A-Za-z0-9_.-]+$", message=_l("Use letters, digits, dots, dashes and underscores only.")),
    ], render_kw={"autocomplete": "username"})
    email = StringField(_l("Email"), validators=[DataRequired(), Email(), Length(max=120)],
                        render_kw={"autocomplete": "email"})
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(min=8, max=128)],
                             render_kw={"autocomplete": "new-password"})
    password2 = PasswordField(_l("Repeat password"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords do not match.")),
    ], render_kw={"autocomplete": "new-password"})
    submit = SubmitField(_l("Register"))

    def validate_username(self, username: StringField) -> None:
        """Refuse a username that is taken."""
        if db.session.scalar(sa.select(User.id).where(sa.func.lower(User.username) == username.data.lower())):
            raise ValidationError(_("That username is taken. Please choose another."))

    def validate_email(self, email: StringField) -> None:
        """Refuse an email address that already has an account."""
        if db.session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == email.data.lower())):
            raise ValidationError(_("That email address already has an account."))
