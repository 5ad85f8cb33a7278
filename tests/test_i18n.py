"""Languages: English and Spanish, chosen by Accept-Language or the footer, and a complete catalogue."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.conftest import csrf_token

ROOT = Path(__file__).resolve().parent.parent
SPANISH = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}


def test_english_by_default(client):
    """No Accept-Language: the page is English and says so."""
    page = client.get("/auth/login").get_data(as_text=True)
    assert '<html lang="en">' in page


def test_spanish_from_accept_language(client):
    """A Spanish browser gets Spanish pages, named in <html lang>."""
    page = client.get("/auth/login", headers=SPANISH).get_data(as_text=True)
    assert '<html lang="es">' in page
    assert "Idioma" in page


def test_footer_choice_persists_over_accept_language(client):
    """The footer's choice wins over the browser's language and is remembered."""
    token = csrf_token(client)
    response = client.post("/language", data={"language": "en", "next": "/explore", "csrf_token": token},
                           headers=SPANISH)
    assert response.status_code == 303 and response.headers["Location"].endswith("/explore")
    page = client.get("/auth/login", headers=SPANISH).get_data(as_text=True)
    assert '<html lang="en">' in page


def test_footer_choice_needs_csrf_and_stays_on_site(client):
    """The switcher is a state change: CSRF-checked, and its `next` never leaves the site."""
    assert client.post("/language", data={"language": "es"}).status_code == 400
    response = client.post("/language", data={"language": "es", "next": "//evil.example/",
                                              "csrf_token": csrf_token(client)})
    assert response.headers["Location"] in ("/", "http://localhost/")


def test_unknown_language_is_ignored(client):
    """A language we do not have changes nothing."""
    client.post("/language", data={"language": "xx", "csrf_token": csrf_token(client)})
    assert '<html lang="en">' in client.get("/auth/login").get_data(as_text=True)


def _extracted_msgids(tmp_path: Path) -> set[str]:
    """Every marked string of the code and templates, as pybabel extracts it."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_l",
                    "--no-location", "-o", str(pot), "."], cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as fh:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}


def test_spanish_catalogue_translates_every_marked_string(tmp_path):
    """`flask translate update` has been run and every string has a Spanish translation."""
    with (ROOT / "app/translations/es/LC_MESSAGES/messages.po").open("rb") as fh:
        catalogue = read_po(fh)
    translated = {(m.id if isinstance(m.id, str) else m.id[0]) for m in catalogue
                  if m.id and m.string and (m.string if isinstance(m.string, str) else all(m.string))
                  and not m.fuzzy}
    missing = sorted(_extracted_msgids(tmp_path) - translated)
    assert not missing, f"strings without a Spanish translation (run flask translate update): {missing}"


# --- every template string is marked ------------------------------------------------------------------

TEMPLATES = ROOT / "app/templates"
JINJA = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)
TAG = re.compile(r"<[^>]*>", re.S)
# Attributes people read (screen readers too): their values must be marked like text.
READ_ATTRIBUTES = re.compile(r'\b(?:aria-label|title|placeholder|alt)="([^"]*)"')
# Words that stay as they are in every language (keep this tiny).
NOT_TRANSLATED = {"Microblog"}  # the product's name


def literal_words(path: Path) -> list[str]:
    """The words of a template that reach users without passing through gettext."""
    text = JINJA.sub(" ", path.read_text(encoding="utf-8"))
    if path.suffix == ".html":
        text = re.sub(r"<style.*?</style>", " ", text, flags=re.S)
        attributes = " ".join(READ_ATTRIBUTES.findall(text))
        text = TAG.sub(" ", text) + " " + attributes
    text = re.sub(r"&[a-z]+;|&#\d+;", " ", text)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z'’]+", text) if w not in NOT_TRANSLATED]


def test_every_template_string_is_marked_for_translation():
    """No template text bypasses `_()`: what is not marked would stay English on a Spanish page."""
    found = {str(p.relative_to(TEMPLATES)): words for p in sorted(TEMPLATES.rglob("*"))
             if p.suffix in (".html", ".txt") and (words := literal_words(p))}
    assert not found, f"literal text in templates (wrap it in {{{{ _('...') }}}}): {found}"


def test_the_scanner_sees_a_literal(tmp_path):
    """The check above would catch an unmarked word, in text and in a read attribute."""
    page = tmp_path / "x.html"
    page.write_text('<p>{{ _("Fine") }}</p><button aria-label="Close">{{ _("Go") }}</button> Hello')
    assert literal_words(page) == ["Hello", "Close"]


# --- a Spanish browser sees Spanish --------------------------------------------------------------------

@pytest.fixture
def spanish(client):
    """The test client as a Spanish browser (every request says Accept-Language: es-ES)."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "es-ES,es;q=0.9"
    return client


def page_text(response) -> str:
    """A response's HTML."""
    return response.get_data(as_text=True)


def test_spanish_anonymous_pages(spanish):
    """Login, register and an error page are Spanish, and nothing English is left in their words."""
    login = page_text(spanish.get("/auth/login"))
    assert "Iniciar sesión" in login and "¿Has olvidado tu contraseña?" in login and "Nombre de usuario" in login
    assert "Sign in" not in login and "Forgot your password" not in login
    register = page_text(spanish.get("/auth/register"))
    assert "Repite la contraseña" in register and "Correo electrónico" in register
    missing = spanish.get("/no-such-page")
    assert missing.status_code == 404
    assert "No se ha encontrado la URL solicitada" in page_text(missing) and "Volver al inicio" in page_text(missing)


def test_spanish_form_error_and_flash(spanish, auth, make_user):
    """A refused form says why in Spanish (ours and WTForms' own messages); a flash too."""
    refused = auth.register("bob", password="password123", password2="different1")
    assert refused.status_code == 400
    assert "Las dos contraseñas no coinciden." in page_text(refused)
    empty = spanish.post("/auth/login", data={"username": "", "password": "", "csrf_token": csrf_token(spanish)})
    assert "This field is required" not in page_text(empty)
    make_user("alice")
    wrong = auth.login("alice", password="not-the-password")
    assert "Nombre de usuario o contraseña incorrectos." in page_text(wrong)


def test_spanish_signed_in_pages(spanish, auth, make_user, make_posts):
    """Home, profile, /tasks and the account page speak Spanish to a signed-in Spanish user."""
    user = make_user("alice")
    make_posts(user.id, 3)
    auth.login("alice")
    home = page_text(spanish.get("/index"))
    assert "¡Hola, alice!" in home and "Di algo" in home and "Tareas" in home and "Salir" in home
    profile = page_text(spanish.get("/user/alice"))
    assert "3 publicaciones" in profile and "Exportar tus publicaciones" in profile
    tasks = page_text(spanish.get("/tasks"))
    assert "Tus tareas" in tasks and "Todavía no hay tareas." in tasks
    account = page_text(spanish.get("/auth/account"))
    assert "Cambia tu contraseña" in account and "Cerrar sesión en todas partes" in account
    posted = spanish.post("/index", data={"post": "hola", "csrf_token": csrf_token(spanish)}, follow_redirects=True)
    assert "¡Tu publicación ya está publicada!" in page_text(posted)


def test_scripts_get_their_words_in_a_meta_tag(spanish, client):
    """tasks.js and page.js read their Spanish from <meta name="i18n"> (no inline script); English sends none."""
    import html
    import json

    from app.i18n import JS_STRINGS

    meta = re.compile(r'<meta name="i18n" content="([^"]*)">')
    words = json.loads(html.unescape(meta.search(page_text(spanish.get("/auth/login"))).group(1)))
    assert set(words) == set(JS_STRINGS)
    assert words["Waiting for a worker…"] == "Esperando a un proceso de fondo…"
    assert words["{current} of {total} {noun}"] == "{current} de {total} {noun}"
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE")
    assert json.loads(html.unescape(meta.search(page_text(client.get("/auth/login"))).group(1))) == {}


def test_task_messages_follow_the_task_language(app, make_user):
    """A message the worker, a callback or the sweep writes is in the task's language, not the process's."""
    from app.extensions import db
    from app.i18n import task_locale
    from app.jobs.callbacks import WORKER_DIED
    from app.models import Task
    from app.progress import CANCELED

    user = make_user("alice")
    with app.app_context():
        db.session.add(Task(id="t-es", name="export_posts", lane="posts", description="Exportando publicaciones",
                            user_id=user.id, language="es"))
        db.session.commit()
        with task_locale("t-es"):
            assert str(CANCELED) == "Cancelada."
            assert str(WORKER_DIED).startswith("El proceso de fondo se detuvo")
        with task_locale("no-such-task"):
            assert str(CANCELED) == "Canceled."


def _spanish_task(app, user_id: int) -> str:
    """A queued export launched by a Spanish user (its row says so)."""
    from app.extensions import db
    from app.models import Task
    from tests.factories import make_task

    task_id = make_task(app, user_id)
    with app.app_context():
        db.session.get(Task, task_id).language = "es"
        db.session.commit()
    return task_id


def test_cancel_from_a_spanish_page_says_canceled_in_spanish(app, spanish, auth, make_user):
    """The web process writes the cancel in the request's language; the flash is Spanish too."""
    user = make_user("alice")
    auth.login("alice")
    task_id = _spanish_task(app, user.id)
    page = spanish.post(f"/tasks/{task_id}/cancel", data={"csrf_token": csrf_token(spanish), "next": "/tasks"},
                        follow_redirects=True)
    assert "Se ha cancelado la tarea." in page_text(page)
    task = next(t for t in spanish.get("/api/tasks").get_json()["tasks"] if t["task_id"] == task_id)
    assert (task["status"], task["message"]) == ("canceled", "Cancelada.")


def test_cli_fail_writes_the_default_message_in_the_task_language(app, runner, make_user):
    """`flask tasks fail` is an operator's command, but the user reads its message in their language."""
    from app.extensions import db
    from app.models import Task

    user = make_user("alice")
    task_id = _spanish_task(app, user.id)
    result = runner.invoke(args=["tasks", "fail", task_id])
    assert result.exit_code == 0, result.output
    assert "Ended by an operator" in result.output  # the operator's own output stays English
    with app.app_context():
        assert db.session.get(Task, task_id).message == "Terminada por un operador: la tarea se había atascado."


@pytest.mark.parametrize("language, value, written", [
    ("en", 999, "999"), ("en", 1234, "1,234"), ("en", 2_000_000, "2,000,000"),
    ("es", 1234, "1234"), ("es", 12_345, "12.345"), ("es", 2_000_000, "2.000.000"),
])
def test_counts_are_written_as_the_browser_writes_them(app, language, value, written):
    """The server groups digits as the pages' script does (`toLocaleString`, CLDR's minimum grouping):
    Spanish 1234 but 12.345, so one page never shows both 1.234 and 1234."""
    from flask_babel import force_locale

    from app.i18n import format_count

    with app.test_request_context(), force_locale(language):
        assert format_count(value) == written


@pytest.mark.parametrize("language", ["en", "es"])
def test_counts_are_written_as_babel_writes_them_in_every_language(app, language):
    """The written-out group separators agree with Babel's CLDR data for every language we serve."""
    from babel.numbers import format_decimal
    from flask_babel import force_locale

    from app.i18n import GROUP_SYMBOLS, LANGUAGES, MIN_GROUPING_DIGITS, format_count

    assert set(GROUP_SYMBOLS) == set(LANGUAGES)  # a new language needs its separator here
    least = 10 ** (2 + MIN_GROUPING_DIGITS.get(language, 1))
    values = [0, 7, 999, 1000, 1234, 9999, 10_000, 12_345, 99_999, 100_000, 999_999, 1_000_000,
              2_000_000, 123_456_789, 2 ** 31, 10 ** 15, -1234, -12_345, -1_000_000]
    with app.test_request_context(), force_locale(language):
        for value in values:
            assert format_count(value) == format_decimal(value, locale=language, group_separator=abs(value) >= least)


def test_a_locale_without_a_written_out_separator_is_formatted_by_babel(app):
    """Mexican Spanish groups with commas, unlike Spain's: a locale not in the table is Babel's to write."""
    from flask_babel import force_locale

    from app.i18n import format_count

    with app.test_request_context(), force_locale("es_MX"):
        assert format_count(12_345) == "12,345"


def test_writing_a_count_loads_no_locale_data():
    """A work horse writes one count per export email: in a fresh process that must not load Babel's
    locale data (25 ms and 4.7 MiB per horse), in either language."""
    script = (
        "import babel.localedata as data\n"
        "from flask import Flask\n"
        "from flask_babel import Babel, force_locale\n"
        "from app.i18n import format_count\n"
        "app = Flask('probe'); Babel(app)\n"
        "with app.app_context():\n"
        "    with force_locale('en'): english = format_count(2_000_000)\n"
        "    with force_locale('es'): spanish = format_count(2_000_000)\n"
        "print(english, spanish, sorted(data._cache))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.split() == ["2,000,000", "2.000.000", "[]"]
