"""Post forms."""
from flask_wtf import FlaskForm
from flask_babel import gettext as _, lazy_gettext as _l
from wtforms import Field, SubmitField, TextAreaField
from wtforms.validators import DataRequired, ValidationError

POST_MAX_CHARS = 140


def browser_line_breaks(text: str | None) -> str | None:
    """Browsers count a line break as one character (maxlength) but send CR LF: count as they do."""
    return text.replace("\r\n", "\n") if text else text


class BoundedTextAreaField(TextAreaField):
    """A textarea that, when refused, shows back at most a little more than its limit, never a huge body."""

    def _value(self) -> str:
        return super()._value()[:1000]
class MaxCharacters:
    """At most `limit` code points, refused (never cut) with the limit and the count.

    Not wtforms' Length: that one also renders `maxlength`, which browsers count in UTF-16 units,
    so a text of 100 emoji (100 characters here) was cut to 70 before it was even sent."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, form: FlaskForm, field: Field) -> None:
        count = len(field.data or "")
        if count > self.limit:
            raise ValidationError(_("A post has at most %(limit)s characters. This one has %(count)s.", limit=self.limit, count=count))


class PostForm(FlaskForm):
    """A new post."""

    post = BoundedTextAreaField(_l("Say something"), filters=[browser_line_breaks], validators=[
        DataRequired(message="A post cannot be empty."),
        MaxCharacters(POST_MAX_CHARS),
    ], render_kw={"data-max-chars": POST_MAX_CHARS})
    submit = SubmitField(_l("Submit"))


class EmptyForm(FlaskForm):
    """A button that changes state: carries only the CSRF token."""

    submit = SubmitField(_l("Submit"))
