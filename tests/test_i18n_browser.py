"""Spanish in Chromium: a browser set to es-ES gets Spanish pages, a Spanish live bar and a Spanish
email; the footer switcher changes the language and remembers it (real deployment, SQLite).

Exports are held (tests/jobs.py) so the test chooses when the bar moves."""
from __future__ import annotations

import re
import uuid
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.harness import PASSWORD, Stack, seed

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]

STACK_ENV = {"TESTING_JOBS": "1"}
POSTS = 120
END_TIMEOUT = 60_000  # ms


@pytest.fixture
def spanish_page(browser: Browser, browser_context_args: dict[str, Any]) -> Iterator[Page]:
    """A page of a browser whose language is Spanish (Accept-Language and navigator.language)."""
    context = browser.new_context(**browser_context_args, locale="es-ES")
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_up_in_spanish(page: Page, stack: Stack) -> str:
    """Register and sign in through the Spanish forms; returns the username."""
    username = "e" + uuid.uuid4().hex[:10]
    page.goto(stack.url + "/auth/register")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    page.get_by_label("Nombre de usuario").fill(username)
    page.get_by_label("Correo electrónico").fill(f"{username}@example.com")
    page.get_by_label("Contraseña", exact=True).fill(PASSWORD)
    page.get_by_label("Repite la contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Registrarse").click()
    expect(page.get_by_text("¡Te damos la bienvenida a Microblog!")).to_be_visible()
    page.get_by_label("Nombre de usuario").fill(username)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Iniciar sesión").click()
    expect(page.get_by_role("link", name="Perfil")).to_be_visible()
    return username


def test_spanish_browser_exports_and_gets_a_spanish_email(stack: Stack, spanish_page: Page) -> None:
    """Spanish pages, a Spanish live bar (rendered by tasks.js) and a Spanish email."""
    page = spanish_page
    username = sign_up_in_spanish(page, stack)
    seed(stack.database_url, username, POSTS)
    page.goto(f"{stack.url}/user/{username}")
    expect(page.locator("#post-count")).to_have_text(f"{POSTS} publicaciones")
    page.get_by_role("button", name="Exportar tus publicaciones").click()
    expect(page.get_by_text("Tu exportación ha empezado.")).to_be_visible()
    bar = page.locator('#task-alerts [role="progressbar"][data-task-id]')
    expect(bar).to_have_count(1)
    task_id = bar.get_attribute("data-task-id")
    status = page.locator(f'#task-alerts [data-task-status="{task_id}"]')

    stack.release(task_id, 40)
    expect(bar).to_have_attribute("aria-valuenow", "40", timeout=END_TIMEOUT)
    expect(status).to_contain_text(re.compile(rf"\d+% · \d+ de {POSTS} publicaciones"))
    stack.release(task_id, 100)
    expect(bar).to_have_attribute("data-status", "finished", timeout=END_TIMEOUT)
    expect(status).to_contain_text("Hecho: te lo hemos enviado por correo")
    expect(status.get_by_role("link", name="Descargar")).to_be_visible()
    expect(page.locator(f'[data-task-title="{task_id}"]')).to_have_text("Publicaciones exportadas")
    expect(page.locator("#task-announcer")).to_contain_text("Publicaciones exportadas: Hecho")

    mail = stack.smtp.wait_for(f"{username}@example.com")
    assert mail.message["Subject"] == "[Microblog] Tus publicaciones"
    assert f"Tu exportación contiene {POSTS} publicaciones" in mail.text()

    page.goto(stack.url + "/tasks")
    expect(page.get_by_role("heading", name="Tus tareas")).to_be_visible()
    expect(page.locator(f'#task-history [data-task-status="{task_id}"]')).to_contain_text("Hecho")


def test_footer_switcher_changes_and_remembers_the_language(stack: Stack, page: Page) -> None:
    """An English browser picks Español in the footer: this page and the next are Spanish, then back."""
    page.goto(stack.url + "/auth/login")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_label("Language").select_option("es")
    page.get_by_role("button", name="Change").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    page.goto(stack.url + "/auth/register")
    expect(page.get_by_role("button", name="Registrarse")).to_be_visible()
    page.get_by_label("Idioma").select_option("en")
    page.get_by_role("button", name="Cambiar").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Register")).to_be_visible()
