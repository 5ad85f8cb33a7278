"""Reading an uploaded `posts.json` as a stream: every entry checked, the first bad one named.

ijson's C backend (yajl2_c) turns the bytes into parser events; only one post at a time is ever a
Python object, so a 20 MB file costs kilobytes of memory. Used by the import job (imports.py).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import ijson
from flask_babel import gettext as _

BODY_MAX = 140  # characters (code points), as the post form counts them
BOM = b"\xef\xbb\xbf"
# Messages are translated where they are raised: the work horse runs in the task's language.
# The export's own format, parsed on a fast path; other ISO 8601 times with a zone are accepted too.
EXPORT_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
_MISSING = object()
# yajl2_c when its wheel is installed (it is, pinned): ~6x faster than ijson's pure Python parser (measured here).
BACKEND = ijson.backend


class BadImport(ValueError):
    """The file is not an importable `posts.json`; the message says where, for the user."""


def open_upload(path: Path) -> BinaryIO:
    """The file, positioned after a UTF-8 BOM if it has one; a binary file is refused here."""
    stream = open(path, "rb")
    head = stream.read(8192)
    if not head:
        stream.close()
        raise BadImport(_("The file is empty.") + " " + _nothing())
    if b"\x00" in head:  # JSON text never holds a NUL byte; images, archives and UTF-16 do
        stream.close()
        raise BadImport(_("The file is binary, not a JSON text file.") + " " + _nothing())
    stream.seek(len(BOM) if head.startswith(BOM) else 0)
    return stream


def iter_entries(stream: BinaryIO) -> Iterator[tuple[str, datetime]]:
    """Yield (body, naive UTC timestamp) for each post, in file order; BadImport names the first bad one."""
    events = ijson.basic_parse(stream, use_float=True)  # floats: no Decimal work for values we reject
    index = -1
    try:
        if _next(events)[0] != "start_map":
            raise BadImport(_shape())
        found = False
        while True:
            event, key = _next(events)
            if event == "end_map":
                break
            if key != "posts":
                if key.startswith("posts."):  # ijson's path for posts' items would be ambiguous
                    raise BadImport(_("The file has an unexpected key %(key)s.", key=repr(key[:40])) + " " + _nothing())
                _skip_value(events)  # another top-level key: not ours, ignored
                continue
            if found:
                raise BadImport(_('The file has two "posts" lists.') + " " + _nothing())
            found = True
            if _next(events)[0] != "start_array":
                raise BadImport(_shape())
            while True:
                event, _value = _next(events)
                if event == "end_array":
                    break
                index += 1
                if event != "start_map":
                    raise BadImport(_("Entry posts[%(index)s] is not an object with a body and a timestamp.", index=index)
                                    + " " + _nothing())
                yield _read_post(events, index)
            index = -1  # past the list: later errors are not an entry's
        if not found:
            raise BadImport(_('The file has no "posts" list.') + " " + _nothing())
        next(events, None)  # anything after the object is an error of its own (trailing garbage)
    except ijson.JSONError as exc:
        reason = str(exc).split("\n", 1)[0].strip()
        if index >= 0:
            text = _("The file is not valid JSON at entry posts[%(index)s] (%(reason)s).", index=index, reason=reason)
        else:
            text = _("The file is not valid JSON (%(reason)s).", reason=reason)
        raise BadImport(text + " " + _nothing()) from None


def _nothing() -> str:
    """The end of every refusal, in the language in force."""
    return _("Nothing was imported.")


def _shape() -> str:
    """The refusal of a file that is not `{"posts": [...]}`."""
    return _('The file must be a JSON object with a "posts" list, as the export writes it.') + " " + _nothing()


def _next(events: Iterator[tuple[str, Any]]) -> tuple[str, Any]:
    """The next parser event; the end of input in the middle of the document is a JSON error."""
    try:
        return next(events)
    except StopIteration:
        raise ijson.IncompleteJSONError("premature end of file") from None


def _skip_value(events: Iterator[tuple[str, Any]]) -> None:
    """Consume one value (a whole object or array) that the import ignores."""
    depth = 0
    while True:
        event, _value = _next(events)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        if depth == 0:
            return


def _read_post(events: Iterator[tuple[str, Any]], index: int) -> tuple[str, datetime]:
    """One post object's body and timestamp, checked; other keys are ignored."""
    body: Any = _MISSING
    stamp: Any = _MISSING
    while True:
        event, key = _next(events)
        if event == "end_map":
            return check_body(body, index), check_timestamp(stamp, index)
        event, value = _next(events)
        if key == "body":
            body = value if event == "string" else None
        elif key == "timestamp":
            stamp = value if event == "string" else None
        if event in ("start_map", "start_array"):
            if key in ("body", "timestamp"):  # the first bad entry is known: no need to read on
                return check_body(body, index), check_timestamp(stamp, index)
            _skip_nested(events)


def _skip_nested(events: Iterator[tuple[str, Any]]) -> None:
    """Consume the rest of an object or array whose start was just read."""
    depth = 1
    while depth:
        event, _value = _next(events)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1


def check_body(body: Any, index: int) -> str:
    """A post body as the post form allows it: a string of 1 to 140 characters (code points)."""
    if body is _MISSING:
        raise BadImport(_("Entry posts[%(index)s] has no body.", index=index) + " " + _nothing())
    if not isinstance(body, str):
        raise BadImport(_("Entry posts[%(index)s]: the body is not a string.", index=index) + " " + _nothing())
    if not body:
        raise BadImport(_("Entry posts[%(index)s]: the body is empty.", index=index) + " " + _nothing())
    if len(body) > BODY_MAX:
        raise BadImport(_("Entry posts[%(index)s]: the body has %(length)s characters; at most %(max)s are allowed.",
                          index=index, length=len(body), max=BODY_MAX) + " " + _nothing())
    if "\x00" in body:  # PostgreSQL cannot store it
        raise BadImport(_("Entry posts[%(index)s]: the body contains a NUL character.", index=index)
                        + " " + _nothing())
    return body


def check_timestamp(stamp: Any, index: int) -> datetime:
    """Naive UTC from the export's `YYYY-MM-DDTHH:MM:SS.ffffffZ`, or any ISO 8601 date-time with a zone."""
    if stamp is _MISSING:
        raise BadImport(_("Entry posts[%(index)s] has no timestamp.", index=index) + " " + _nothing())
    if not isinstance(stamp, str):
        raise BadImport(_("Entry posts[%(index)s]: the timestamp is not a string.", index=index) + " " + _nothing())
    try:
        if EXPORT_STAMP.match(stamp):
            return datetime.fromisoformat(stamp[:-1])
        value = datetime.fromisoformat(stamp)
        if stamp[10:11] not in ("T", "t") or value.tzinfo is None:
            raise ValueError("not a date-time with a time zone")
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        shown = stamp if len(stamp) <= 40 else stamp[:40] + "…"
        raise BadImport(_("Entry posts[%(index)s]: the timestamp %(stamp)s is not a UTC time like %(example)s.",
                          index=index, stamp=repr(shown), example="2026-01-31T12:00:00.000000Z")
                        + " " + _nothing()) from None


def checked_entries(stream: BinaryIO) -> Iterator[tuple[str, datetime]]:
    """The posts of a file check_file accepted: ijson builds each object in C, ~2x faster than iter_entries."""
    for index, post in enumerate(ijson.items(stream, "posts.item", use_float=True)):
        yield post["body"], check_timestamp(post["timestamp"], index)
