"""Post forms."""
from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


def browser_line_breaks(text: str | None) -> str | None:
    """Browsers count a line break as one character (maxlength) but send CR LF: count as they do."""
    return text.replace("\r\n", "\n") if text else text


class BoundedTextAreaField(TextAreaField):
    """A textarea that, when refused, shows back at most a little more than its limit, never a huge body."""

    def _value(self) -> str:
        return super()._value()[:1000]


class PostForm(FlaskForm):
    """A new post."""

    post = BoundedTextAreaField("Say something", filters=[browser_line_breaks], validators=[
        DataRequired(message="A post cannot be empty."),
        Length(min=1, max=140, message="A post has at most 140 characters."),
    ])
    submit = SubmitField("Submit")


class EmptyForm(FlaskForm):
    """A button that changes state: carries only the CSRF token."""

    submit = SubmitField("Submit")
