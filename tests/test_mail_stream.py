"""Streaming an attachment from its file to a real SMTP server (aiosmtpd): what arrives is what
`smtplib.send_message` sends for the same message built in memory, byte for byte but the boundary."""
from __future__ import annotations

import email
import email.policy
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import tracemalloc
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from flask import Flask

from app.mail_stream import CHUNK_BYTES, attach_file, base64_size, send_with_file
from app import mailer
from app.mailer import new_message
from scripts.services import ManagedProcess, free_port, wait_for_port
from tests.harness import SmtpServer

# Lines that start with '.' in both bodies: the SMTP transparency rule must double and undo them.
TEXT = "Dear ü,\n.\n..two dots\n.hidden line\nend.\n"
HTML = "<p>Dear ü,</p>\n.<br>\n</p>\n"


class RawSmtp(SmtpServer):
    """The harness's server, also keeping each message's raw bytes and MAIL options."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[list[str], bytes]] = []

    def start(self, smtputf8: bool | None = None) -> "RawSmtp":
        """Listen as the harness's server does, but with a size limit, so the server offers SIZE."""
        if smtputf8 is not None:
            self.smtputf8 = smtputf8
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, data_size_limit=64 << 20,
                                     enable_SMTPUTF8=self.smtputf8)
        self.controller.start()
        return self

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        """Keep the raw message, then do as the harness does."""
        self.raw.append((list(envelope.mail_options), envelope.original_content or envelope.content))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_server() -> Iterator[RawSmtp]:
    """A real SMTP server on a free port, offering SMTPUTF8."""
    server = RawSmtp().start()
    yield server
    server.stop()


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """A file whose base64 takes several chunks and ends in a partial line."""
    path = tmp_path / "posts.json"
    path.write_bytes(os.urandom(CHUNK_BYTES * 3 + 1234))
    return path


def message(to: str = "reader@example.com") -> email.message.EmailMessage:
    """The export email's shape: text and HTML bodies (the attachment is added by each test)."""
    msg = new_message("[Microblog] Your blog posts", "admin@example.com", to)
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    return msg


def connect(server: SmtpServer) -> smtplib.SMTP:
    """A client connection to the server."""
    return smtplib.SMTP("127.0.0.1", server.port, timeout=10)


def streamed(server: SmtpServer, msg: email.message.EmailMessage, path: Path) -> None:
    """Send msg with path attached by the streaming path."""
    attachment = attach_file(msg, path, "posts.json", "application", "json")
    with connect(server) as smtp:
        send_with_file(smtp, msg, attachment)


def in_memory(server: SmtpServer, msg: email.message.EmailMessage, path: Path) -> None:
    """Send msg with path attached as the export did before: whole, through send_message."""
    msg.add_attachment(path.read_bytes(), maintype="application", subtype="json", filename="posts.json")
    with connect(server) as smtp:
        smtp.send_message(msg)


def without_boundary(raw: bytes) -> bytes:
    """raw with its MIME boundaries replaced by fixed words (the only random part of a flattening)."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    for n, part in enumerate(p for p in parsed.walk() if p.is_multipart()):
        raw = raw.replace(part.get_boundary().encode(), b"BOUNDARY%d" % n)
    return raw


def test_attachment_arrives_as_the_files_bytes(smtp_server, big_file):
    """The parsed message: posts.json application/json decodes to the file; both bodies keep their dots."""
    streamed(smtp_server, message(), big_file)
    received = email.message_from_bytes(smtp_server.raw[0][1], policy=email.policy.default)
    [part] = list(received.iter_attachments())
    assert part.get_filename() == "posts.json"
    assert part.get_content_type() == "application/json"
    assert part.get_payload(decode=True) == big_file.read_bytes()
    assert all(len(line) <= 76 for line in part.get_payload().splitlines())
    # (the raw message keeps SMTP's CRLF line ends, and the parser hands them back)
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT
    assert received.get_body(("html",)).get_content().replace("\r\n", "\n") == HTML
    assert received["Subject"] == "[Microblog] Your blog posts"


@pytest.mark.parametrize("to", ["reader@example.com", "üreader@example.com"])
def test_stream_is_what_send_message_sends(smtp_server, big_file, to):
    """Same headers, parts, line lengths, MAIL options and SIZE as the in-memory message, but the boundaries."""
    msg = message(to)
    twin = message(to)
    for name in ("Date", "Message-ID"):
        twin.replace_header(name, msg[name])
    streamed(smtp_server, msg, big_file)
    in_memory(smtp_server, twin, big_file)
    (options, raw), (twin_options, twin_raw) = smtp_server.raw
    assert without_boundary(raw) == without_boundary(twin_raw)
    assert options == twin_options
    [size] = [int(o[5:]) for o in options if o.upper().startswith("SIZE=")]
    assert size == len(raw)  # declared before the file was read, yet exact


def test_the_stream_is_written_without_waiting_for_acks(smtp_server, tmp_path):
    """The streamed DATA goes out write by write with TCP_NODELAY: its last small write (the
    end-of-data dot) must not wait for the server's delayed ACK of the one before (40 ms on Linux)."""
    path = tmp_path / "posts.json"
    path.write_bytes(b"[]")
    msg = message()
    attachment = attach_file(msg, path, "posts.json", "application", "json")
    with connect(smtp_server) as smtp:
        assert not smtp.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # smtplib's default
        send_with_file(smtp, msg, attachment)
        assert smtp.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert len(smtp_server.mails) == 1


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1])
def test_base64_size_is_the_encoded_length(tmp_path, size):
    """SIZE is declared before the file is read: base64_size must be exact at line and chunk edges."""
    from app.mail_stream import base64_lines

    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    with open(path, "rb") as file:
        assert base64_size(size) == sum(len(piece) for piece in base64_lines(file))


def test_non_ascii_address_uses_smtputf8(smtp_server, big_file):
    """ü…@example.com goes out with SMTPUTF8 when the server offers it, as send_message does."""
    address = f"ü{uuid.uuid4().hex[:8]}@example.com"
    streamed(smtp_server, message(address), big_file)
    mail = smtp_server.wait_for(address)
    assert mail.message["To"] == address
    assert "SMTPUTF8" in smtp_server.raw[0][0]
    assert mail.attachment("posts.json")[1] == big_file.read_bytes()


def test_non_ascii_address_without_smtputf8_raises_as_send_message_does(big_file):
    """A server without SMTPUTF8: the same error, with the same words, as send_message; nothing arrives."""
    server = RawSmtp().start(smtputf8=False)
    address = f"ü{uuid.uuid4().hex[:8]}@example.com"
    try:
        with pytest.raises(smtplib.SMTPNotSupportedError) as streaming:
            streamed(server, message(address), big_file)
        with pytest.raises(smtplib.SMTPNotSupportedError) as stdlib:
            in_memory(server, message(address), big_file)
        assert streaming.value.args == stdlib.value.args
        assert server.raw == []
    finally:
        server.stop()


def test_refused_recipient_raises_as_send_message_does(smtp_server, big_file):
    """A refused recipient: SMTPRecipientsRefused with the server's answer, and nothing sent."""
    address = "someone+refuse@example.com"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as streaming:
        streamed(smtp_server, message(address), big_file)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as stdlib:
        in_memory(smtp_server, message(address), big_file)
    assert streaming.value.recipients == stdlib.value.recipients
    assert smtp_server.raw == []


def test_the_file_is_never_whole_in_memory(tmp_path):
    """Sending a 3.6 MiB file allocates a few chunks' worth (~80 KiB each), not the file's size.

    The server runs in a process of its own: tracemalloc counts every thread of this one, and the
    harness's server keeps whole messages.
    """
    port = free_port()
    sink = ManagedProcess([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                           "-c", "aiosmtpd.handlers.Sink"], tmp_path / "sink.log").start()
    try:
        wait_for_port("127.0.0.1", port)
        big_file = tmp_path / "posts.json"
        big_file.write_bytes(os.urandom(CHUNK_BYTES * 64))
        msg = message()
        attachment = attach_file(msg, big_file, "posts.json", "application", "json")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            tracemalloc.start()
            try:
                send_with_file(smtp, msg, attachment)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    finally:
        sink.stop()
    assert peak < 1 << 20, f"{peak:,} bytes allocated at the peak"


def test_starttls_and_login_as_flask_mail_connects(tmp_path, big_file):
    """Through mailer.send: STARTTLS and AUTH as Flask-Mail's connection does them, then the file streamed
    over the TLS socket (the server refuses mail before STARTTLS and login)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = RawSmtp()

    def authenticate(smtp, session, envelope, mechanism, auth_data) -> AuthResult:
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"mailer", b"secret"))

    server.controller = Controller(server, hostname="127.0.0.1", port=server.port, tls_context=context,
                                   require_starttls=True, auth_required=True, authenticator=authenticate)
    server.controller.start()
    app = Flask(__name__)
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_USE_TLS=True, MAIL_USERNAME="mailer",
                      MAIL_PASSWORD="secret", MAIL_TIMEOUT=10)
    mailer.mail.init_app(app)
    try:
        with app.app_context():
            msg = message()
            mailer.send(msg, mailer.attach_file(msg, big_file, "posts.json", "application", "json"))
    finally:
        server.stop()
    assert server.mails[0].attachment("posts.json") == ("application/json", big_file.read_bytes())
