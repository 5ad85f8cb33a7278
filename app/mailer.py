"""Sending a standard-library EmailMessage through the SMTP server Flask-Mail is configured for.

Flask-Mail 0.10 cannot address `ü@example.com` (its sanitize_address raises UnicodeEncodeError),
so messages are built with `email.message.EmailMessage` and handed to smtplib's `send_message`,
which uses SMTPUTF8 when an address needs it and the server offers it (and raises
SMTPNotSupportedError when it does not). Flask-Mail still opens the connection (TLS, login).
A message with a file attached by `attach_file` is sent by app/mail_stream.py, which reads the file
while it writes the message (same rules), so an attachment never sits whole in memory.
"""
from __future__ import annotations

import email.policy
import socket
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Iterator

from flask import current_app

from app.extensions import mail
from app.mail_stream import FileAttachment, attach_file, send_with_file

__all__ = ["FileAttachment", "attach_file", "new_message", "send"]


def new_message(subject: str, sender: str, recipient: str) -> EmailMessage:
    """An empty message with the headers every mail of ours carries."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = recipient
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    return msg


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Flask-Mail opens SMTP without a timeout: bound it so a silent server cannot hang the job."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def send(msg: EmailMessage, attachment: FileAttachment | None = None) -> None:
    """Send msg, reading attachment's file as it goes, via the configured server (not if MAIL_SUPPRESS_SEND)."""
    with _socket_timeout(current_app.config.get("MAIL_TIMEOUT", 30)):
        with mail.connect() as connection:
            if connection.host is None:
                return
            if attachment is None:
                connection.host.send_message(msg)
            else:
                send_with_file(connection.host, msg, attachment)
