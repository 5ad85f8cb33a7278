"""Delivering a written export: whatever happens to the email, the task ends `finished` and the file
stays downloadable (real web server, worker, Redis and aiosmtpd)."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from app.mail_stream import CHUNK_BYTES
from tests.harness import new_user

# One deployment (SQLite) is enough here: the database plays no part in how mail is sent.
pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

CLASS_NAME = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:Error|Exception)\b")


def unicode_address() -> str:
    """A fresh address whose local part is not ASCII."""
    return f"ü{uuid.uuid4().hex[:8]}@example.com"


def test_non_ascii_address_is_mailed_with_smtputf8(stack):
    """A user registered as ü…@example.com gets the export by email (the server offers SMTPUTF8)."""
    address = unicode_address()
    user = new_user(stack, posts=12, email=address)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        assert end["status"] == "finished", end
        assert end["message"] is None, end
        mail = stack.smtp.wait_for(address)
        assert mail.message["To"] == address
        assert len(json.loads(mail.attachment("posts.json")[1])["posts"]) == 12
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == 12
    finally:
        watcher.close()


def test_attachment_is_the_files_bytes(stack):
    """The attachment, streamed from the file in chunks (app/mail_stream.py), decodes to the download's bytes."""
    user = new_user(stack, posts=1000)
    watcher = user.socket()
    try:
        end = watcher.terminal(user.export())
        assert end["status"] == "finished" and end["message"] is None, end
        mail = stack.smtp.wait_for(user.email)
        [part] = list(mail.message.iter_attachments())
        assert (part.get_filename(), part.get_content_type()) == ("posts.json", "application/json")
        data = part.get_payload(decode=True)
        assert CHUNK_BYTES < len(data) <= 100_000, "the file should take several chunks and still be attached"
        assert data == user.get(end["download_url"]).content
        assert mail.message["Subject"] == "[Microblog] Your blog posts"
        assert "posts.json" in mail.text()
    finally:
        watcher.close()


def test_non_ascii_address_without_smtputf8_finishes_with_the_file(stack):
    """A server without SMTPUTF8 cannot take ü…@example.com: finished, a readable reason, the file kept."""
    address = unicode_address()
    user = new_user(stack, posts=7, email=address)
    watcher = user.socket()
    stack.smtp.stop()
    stack.smtp.start(smtputf8=False)
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        assert end["status"] == "finished", end
        assert "email could not be sent" in end["message"], end
        assert "non-ASCII" in end["message"], end
        assert not CLASS_NAME.search(end["message"]), end
        assert stack.smtp.to(address) == []
        assert len(json.loads(user.get(end["download_url"]).content)["posts"]) == 7
        assert "email could not be sent" in user.get("/tasks").text
    finally:
        stack.smtp.stop()
        stack.smtp.start(smtputf8=True)
        watcher.close()
