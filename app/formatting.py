"""How sizes, durations, counts and times read on pages and in emails: the templates' filters.

Bound to the app itself, not to a blueprint: the worker's app (WEB=False) mounts no blueprint, and
the export email it renders uses `filesize`, `thousands` and `utc_text` too.
"""
from __future__ import annotations

from datetime import datetime

from flask import Flask

from app.models import isoformat_z

# Binary units, named as such: 161 MiB is not 161 MB.
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def init_app(app: Flask) -> None:
    """Register the filters on the app's Jinja environment."""
    for name, func in (("filesize", filesize), ("duration", duration), ("thousands", thousands),
                       ("utc_iso", utc_iso), ("utc_text", utc_text)):
        app.add_template_filter(func, name)


def filesize(size: int | None) -> str:
    """`161.1 MiB`, `12 bytes`: powers of 1024 with their IEC names."""
    if size is None:
        return ""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} {_UNITS[0]}" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def duration(seconds: float | None) -> str:
    """`0.4 s`, `12 s`, `3 min 5 s`, `2 h 4 min`."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def thousands(value: int | None) -> str:
    """`2,000,000` in English, `2.000.000` in Spanish: the language in use, grouped as browsers do."""
    from app.i18n import format_count

    return "" if value is None else format_count(value)


def utc_iso(value: datetime | None) -> str:
    """The `datetime` attribute of a `<time>`: ISO 8601 UTC with `Z`."""
    return isoformat_z(value) or ""


def utc_text(value: datetime | None) -> str:
    """What a `<time>` says before the script localises it (and without scripts)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""
