"""Languages: which one a request is served in, and the footer switcher that remembers a choice.

The choice order is the tutorial's plus a switcher: an explicit choice (a cookie the footer form
sets) wins, then the browser's `Accept-Language`, then English. Outside a request (the worker,
the CLI) the task's stored language is forced with `flask_babel.force_locale`.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from flask import Blueprint, current_app, has_request_context, redirect, request
from werkzeug.wrappers import Response


LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "lang"
ONE_YEAR = 365 * 24 * 3600

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    """The language of this request: the switcher's cookie, else Accept-Language, else English."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def current_language() -> str:
    """The language code pages and new tasks use now."""
    from flask_babel import get_locale

    locale = get_locale()
    return locale.language if locale is not None and locale.language in LANGUAGES else DEFAULT_LANGUAGE


@bp.route("/language", methods=["POST"])
def set_language() -> Response:
    """Remember the footer's choice of language (CSRF-checked like every form) and go back."""
    code = request.form.get("language", "")
    response = redirect(_same_site(request.form.get("next")), code=303)
    if code in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, code, max_age=ONE_YEAR, samesite="Lax", httponly=True,
                            secure=current_app.config.get("PUBLIC_URL", "").startswith("https://"))
    return response


def _same_site(target: str | None) -> str:
    """A same-site path to go back to (the security issue's shared helper replaces this at merge)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ch in target for ch in "\r\n\t"):
        return "/"
    return target


def N_(text: str) -> str:
    """Mark a string for extraction only (pybabel knows `N_`): it is translated where it is used."""
    return text


def task_language(task_id: str) -> str:
    """The language a task was launched in (English if the row is gone or says nothing we have)."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import Task

    try:
        language = db.session.scalar(sa.select(Task.language).where(Task.id == task_id))
        db.session.commit()  # end the read at once: the job (or callback) opens its own transactions
    except Exception:  # the language must never be why a task fails: English then
        db.session.rollback()
        logging.getLogger(__name__).exception("task %s: its language could not be read", task_id)
        return DEFAULT_LANGUAGE
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


@contextmanager
def task_locale(task_id: str, language: str | None = None) -> Iterator[None]:
    """Write what follows (messages, emails) in the task's language, wherever it runs."""
    from flask_babel import force_locale

    with force_locale(language if language in LANGUAGES else task_language(task_id)):
        yield


# CLDR's minimumGroupingDigits: Spanish writes 1234 but 12.345. Browsers (ICU) apply it; Babel does
# not, so the server's 1.234 and the script's 1234 disagreed on one page. Others group from 1,000.
MIN_GROUPING_DIGITS = {"es": 2}

# CLDR's group separator of each language we serve, as Babel gives it (test_i18n compares every
# language here with Babel's own formatting). Written out because Babel's first number in a process
# loads the language's whole locale data: 25 ms of CPU and 4.7 MiB, for one count in an email. A
# work horse is a fresh fork for every job, so every small export paid it (py-spy: a fifth of its
# horse's CPU). A locale missing here (a new language, a territory) is formatted by Babel.
GROUP_SYMBOLS = {"en": ",", "es": "."}


def format_count(value: int) -> str:
    """A whole number in the language in use (a page's, or the task's under task_locale), as browsers write it."""
    from flask_babel import get_locale

    locale = get_locale()
    name = str(locale) if locale is not None else DEFAULT_LANGUAGE
    group = GROUP_SYMBOLS.get(name)
    grouped = abs(value) >= 10 ** (2 + MIN_GROUPING_DIGITS.get(getattr(locale, "language", name), 1))
    if group is None:
        from babel.numbers import format_decimal  # Flask-Babel's wrapper has no group_separator

        return format_decimal(value, locale=locale or DEFAULT_LANGUAGE, group_separator=grouped)
    # Every language we serve groups by threes (CLDR's #,##0.###), as Python's "," does.
    return f"{value:,}".replace(",", group) if grouped else str(value)


# Every word static/js/page.js and tasks.js write, English as the key: base.html hands the scripts
# this page's translations in <meta name="i18n"> (no inline script: the CSP forbids them).
# `{name}` placeholders are filled by the scripts' t().
JS_STRINGS = (
    N_("1 character left"), N_("{count} characters left"),
    N_("1 character too many (at most {limit})"), N_("{count} characters too many (at most {limit})"),
    N_("about {seconds} s left"), N_("about {minutes} min left"),
    N_("{current} of {total} {noun}"), N_("items"), N_("Starting… {percent}%"),
    N_("Done. {message}"), N_("Done — emailed to you"), N_("Done — emailed you a link"), N_("Done"),
    N_("Waiting for a worker…"), N_("Failed: {reason}"), N_("unknown reason"), N_("Canceled"),
    N_("{task}: started."), N_("{task}: {status}."), N_("{task} failed: {reason}"), N_("{task}: canceled."),
    N_("{task} failed"), N_("Download"), N_("Cancel"), N_("Try again"), N_("took {time}"),
    N_("downloadable until"), N_("ended"), N_("launched"), N_("Close"),
)


def js_strings() -> dict[str, str]:
    """The scripts' words in the language in use (nothing in English: the keys are the English)."""
    from flask_babel import gettext

    if current_language() == DEFAULT_LANGUAGE:
        return {}
    return {text: gettext(text) for text in JS_STRINGS}


def inject_languages() -> dict:
    """Templates: the language in use (for `<html lang>`), the switcher's choices, the scripts' words."""
    return {"current_language": current_language(), "languages": LANGUAGES, "js_strings": js_strings}
