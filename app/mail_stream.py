"""Sending a message whose attachment is read from its file while the message goes to the SMTP server.

Why this is written here: smtplib's `send_message` and `sendmail` take the whole message as one bytes
object and `data()` makes a dot-stuffed copy of it, and neither the stdlib nor aiosmtplib or
Flask-Mail can stream DATA; a 10 MiB attachment cost several in-memory copies of ~13.5 MiB of base64.
So the message is built with the stdlib as before, around a placeholder attachment part whose payload
is a random marker; it is flattened as `send_message` flattens (policy SMTP, SMTPUTF8 when an address
needs it), and on the wire the marker's line is replaced by the file's base64, produced in chunks.
The envelope (MAIL, RCPT, DATA and their errors) follows `smtplib.SMTP.sendmail`.
"""
from __future__ import annotations

import base64
import copy
import email.utils
import os
import re
import secrets
import smtplib
from contextlib import suppress
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage
from io import BytesIO
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from app.tcp import send_at_once

CRLF = b"\r\n"
LINE_BYTES = 57  # file bytes per 76-character base64 line, as the stdlib encodes under policy SMTP
CHUNK_BYTES = LINE_BYTES * 1024  # ~57 KiB of file per read, ~78 KiB on the wire
LINE_START_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class FileAttachment:
    """A file attached to a message by reference: its part holds `marker` until the message is sent."""

    path: Path
    marker: bytes


def attach_file(msg: EmailMessage, path: Path, filename: str, maintype: str, subtype: str) -> FileAttachment:
    """Add path as an attachment part (headers as `add_attachment` makes them) without reading the file."""
    marker = secrets.token_bytes(24)  # its base64 is one 32-character line no other part can contain
    msg.add_attachment(marker, maintype=maintype, subtype=subtype, filename=filename)
    return FileAttachment(path, base64.b64encode(marker))


def send_with_file(smtp: smtplib.SMTP, msg: EmailMessage, attachment: FileAttachment) -> dict:
    """Send msg as `smtp.send_message(msg)` would, streaming the attachment; the refused recipients."""
    smtp.ehlo_or_helo_if_needed()
    # `sendmail` writes DATA's message and its end in one `send`; written piece by piece, the end
    # (the lone dot) waited 40 ms for the server's delayed ACK: half of a small export's time.
    send_at_once(smtp.sock)
    sender, recipients = envelope(msg)
    utf8 = needs_smtputf8(smtp, sender, recipients)
    head, tail = flatten_around(msg, attachment.marker, utf8)
    with open(attachment.path, "rb") as file:  # opened before MAIL: a missing file is no half transaction
        size = len(head) + base64_size(os.fstat(file.fileno()).st_size) + len(tail)
        options = [f"size={size}"] if smtp.does_esmtp and smtp.has_extn("size") else []
        if utf8:
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        refused = open_transaction(smtp, sender, recipients, options)
        # A lazy chain, one chunk at a time. Base64 lines never start with '.', so only the parts
        # around the file need dot-stuffing.
        write_data(smtp, chain([dot_stuff(head)], base64_lines(file), [dot_stuff(tail)]))
    return refused


def envelope(msg: EmailMessage) -> tuple[str, list[str]]:
    """Envelope sender and recipients, read from the headers as `send_message` reads them (no Resent- here)."""
    sender = email.utils.getaddresses([msg["Sender"] or msg["From"]])[0][1]
    fields = [f for f in (msg["To"], msg["Bcc"], msg["Cc"]) if f is not None]
    return sender, [address for _, address in email.utils.getaddresses(fields)]


def needs_smtputf8(smtp: smtplib.SMTP, sender: str, recipients: list[str]) -> bool:
    """Whether an address is not ASCII; raises as `send_message` does when the server cannot take it."""
    if "".join([sender, *recipients]).isascii():
        return False
    if not smtp.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError(
            "One or more source or delivery addresses require internationalized email support,"
            " but the server does not advertise the required SMTPUTF8 capability")
    return True


def flatten_around(msg: EmailMessage, marker: bytes, utf8: bool) -> tuple[bytes, bytes]:
    """The message's bytes before and after the marker's line (Bcc removed, CRLF line ends)."""
    msg_copy = copy.copy(msg)
    del msg_copy["Bcc"]
    out = BytesIO()
    BytesGenerator(out, policy=msg.policy.clone(utf8=True) if utf8 else msg.policy).flatten(msg_copy, linesep="\r\n")
    flat = out.getvalue()
    line = marker + CRLF
    if flat.count(line) != 1:
        raise ValueError("the attachment's placeholder is not in the flattened message exactly once")
    head, _, tail = flat.partition(line)
    return head, tail


def base64_size(n: int) -> int:
    """Bytes of n bytes encoded as `base64_lines` encodes them."""
    lines = -(-n // LINE_BYTES)
    return 4 * -(-n // 3) + len(CRLF) * lines


def base64_lines(file: BinaryIO) -> Iterator[bytes]:
    """The file's base64 in 76-character CRLF lines, CHUNK_BYTES of file at a time."""
    while chunk := file.read(CHUNK_BYTES):
        yield base64.encodebytes(chunk).replace(b"\n", CRLF)


def dot_stuff(data: bytes) -> bytes:
    """Double a '.' that starts a line (RFC 5321 4.5.2); data starts at a line start."""
    return LINE_START_DOT.sub(b"..", data)


def open_transaction(smtp: smtplib.SMTP, sender: str, recipients: list[str], options: list[str]) -> dict:
    """MAIL and RCPT as `sendmail` sends them, with its errors; the refused recipients."""
    code, resp = smtp.mail(sender, options)
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPSenderRefused(code, resp, sender)
    refused = {}
    for each in recipients:
        code, resp = smtp.rcpt(each)
        if code not in (250, 251):
            refused[each] = (code, resp)
        if code == 421:
            smtp.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(recipients):
        _abandon(smtp, code)
        raise smtplib.SMTPRecipientsRefused(refused)
    return refused


def write_data(smtp: smtplib.SMTP, pieces: Iterable[bytes]) -> None:
    """DATA with the (already dot-stuffed) pieces written one by one, as `data` + `sendmail` check it."""
    smtp.putcmd("data")
    code, resp = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, resp)
    last = b""
    for piece in pieces:
        if piece:
            smtp.send(piece)
            last = piece
    smtp.send((b"" if last.endswith(CRLF) else CRLF) + b"." + CRLF)
    code, resp = smtp.getreply()
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPDataError(code, resp)


def _abandon(smtp: smtplib.SMTP, code: int) -> None:
    """End a refused transaction as `sendmail` does: close on 421, else RSET (a lost server is no news)."""
    if code == 421:
        smtp.close()
        return
    with suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()
