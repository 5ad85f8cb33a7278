"""The launcher's language travels with the task: the real worker writes its messages and the export
email in it (real web server, worker, Redis and aiosmtpd)."""
from __future__ import annotations

import pytest

from tests.harness import new_user

# One deployment (SQLite): the language is a column of the Task row, the database plays no part.
pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

SPANISH = "es-ES,es;q=0.9"


def test_spanish_export_email_and_task_words(stack):
    """A Spanish user's export: a Spanish email (subject and both bodies), Spanish task words."""
    user = new_user(stack, posts=3)
    user.http.headers["Accept-Language"] = SPANISH
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
    finally:
        watcher.close()
    assert end["status"] == "finished", end
    assert (end["description"], end["done_description"], end["noun"]) == (
        "Exportando publicaciones", "Publicaciones exportadas", "publicaciones"), end
    mail = stack.smtp.wait_for(user.email)
    assert mail.message["Subject"] == "[Microblog] Tus publicaciones"
    text = mail.text()
    assert f"Hola, {user.username}:" in text
    assert "Tu exportación contiene 3 publicaciones en un archivo de" in text
    assert "El archivo va adjunto a este correo como posts.json." in text and "Dear" not in text
    html = mail.message.get_body(("html",)).get_content()
    assert '<html lang="es">' in html and "Descarga tus publicaciones" in html
    assert "Tus tareas" in user.get("/tasks").text


def test_worker_message_in_spanish_and_english_side_by_side(stack):
    """The worker writes each task's message in its own launcher's language, whatever came before."""
    spanish, english = new_user(stack), new_user(stack)
    spanish.http.headers["Accept-Language"] = SPANISH
    watchers = {spanish: spanish.socket(), english: english.socket()}
    try:
        ends = {user: watchers[user].terminal(user.export()) for user in (spanish, english)}
    finally:
        for watcher in watchers.values():
            watcher.close()
    assert ends[spanish]["message"] == "No tienes publicaciones que exportar.", ends[spanish]
    assert ends[english]["message"] == "You have no posts to export.", ends[english]
    assert "No tienes publicaciones que exportar." in spanish.get("/tasks").text


def test_english_export_email_is_unchanged(stack):
    """The English email keeps the contract's subject and words."""
    user = new_user(stack, posts=1)
    watcher = user.socket()
    try:
        end = watcher.terminal(user.export())
    finally:
        watcher.close()
    assert end["status"] == "finished", end
    mail = stack.smtp.wait_for(user.email)
    assert mail.message["Subject"] == "[Microblog] Your blog posts"
    assert f"Dear {user.username}," in mail.text() and "Your export holds 1 post in a file of" in mail.text()
