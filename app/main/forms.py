"""Post forms."""
from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class PostForm(FlaskForm):
    """A new post."""

    post = TextAreaField("Say something", validators=[
        DataRequired(message="A post cannot be empty."),
        Length(min=1, max=140, message="A post has at most 140 characters."),
    ])
    submit = SubmitField("Submit")


class EmptyForm(FlaskForm):
    """A button that changes state: carries only the CSRF token."""

    submit = SubmitField("Submit")
