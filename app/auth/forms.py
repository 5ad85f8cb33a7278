"""Account forms."""
import sqlalchemy as sa
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

from app.extensions import db
from app.models import User


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class RegistrationForm(FlaskForm):
    """A new account."""

    username = StringField("Username", validators=[
        DataRequired(), Length(max=64),
        Regexp(r"^[A-Za-z0-9_.-]+$", message="Use letters, digits, dots, dashes and underscores only."),
    ])
    email = StringField("Email", validators=[DataRequired(), Email(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=128)])
    password2 = PasswordField("Repeat password", validators=[
        DataRequired(), EqualTo("password", message="The two passwords do not match."),
    ])
    submit = SubmitField("Register")

    def validate_username(self, username: StringField) -> None:
        """Refuse a username that is taken."""
        if db.session.scalar(sa.select(User.id).where(sa.func.lower(User.username) == username.data.lower())):
            raise ValidationError("That username is taken. Please choose another.")

    def validate_email(self, email: StringField) -> None:
        """Refuse an email address that already has an account."""
        if db.session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == email.data.lower())):
            raise ValidationError("That email address already has an account.")
