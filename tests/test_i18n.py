"""Languages: English and Spanish, chosen by Accept-Language or the footer, and a complete catalogue."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
