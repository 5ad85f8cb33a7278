"""`python -m scripts.read_mail [-n N] [--body] [DIR]`: the newest mail the local SMTP sink saved.

`make run` (without MAIL_SERVER) saves every message the app sends as a Maildir under var/mail.
"""
from __future__ import annotations

import argparse
import email.policy
import mailbox
import sys
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "mail"


def newest_messages(maildir: Path, count: int) -> list[tuple[float, EmailMessage]]:
    """Up to `count` messages of the Maildir, newest first, with their delivery times."""
    box = mailbox.Maildir(str(maildir), create=False)
    parser = BytesParser(policy=email.policy.default)
    found = []
    for key in box.iterkeys():
        # MaildirMessage knows the delivery time; the modern policy gives iter_attachments().
        delivered = box.get_message(key).get_date()
        found.append((delivered, parser.parsebytes(box.get_bytes(key))))
    found.sort(key=lambda item: item[0], reverse=True)
    return found[:count]


def summary(message: EmailMessage) -> str:
    """Subject, recipient and attachments (name, type, size) of one message."""
    lines = [f"Subject: {message['Subject']}", f"To:      {message['To']}", f"Date:    {message['Date']}"]
    for part in message.iter_attachments():
        size = len(part.get_payload(decode=True) or b"")
        lines.append(f"Attached: {part.get_filename()} ({part.get_content_type()}, {size} bytes)")
    return "\n".join(lines)


def text_body(message: EmailMessage) -> str:
    """The plain-text body, or a note when there is none."""
    body = message.get_body(("plain",))
    return body.get_content() if body is not None else "(no text/plain body)"


def main(argv: list[str]) -> int:
    """Print the newest messages, oldest of them last."""
    parser = argparse.ArgumentParser(prog="python -m scripts.read_mail", description=__doc__)
    parser.add_argument("maildir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("-n", type=int, default=5, help="how many messages (default 5)")
    parser.add_argument("--body", action="store_true", help="also print each text body")
    args = parser.parse_args(argv)
    if not (args.maildir / "cur").is_dir():
        print(f"No mail yet: {args.maildir} is not a Maildir (start the stack with `make run`).")
        return 1
    messages = newest_messages(args.maildir, args.n)
    if not messages:
        print(f"No mail yet in {args.maildir}.")
    for _, message in messages:
        print(summary(message))
        if args.body:
            print("\n" + text_body(message))
        print("-" * 60)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
