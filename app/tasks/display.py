"""How tasks read on pages and in emails: sizes, durations, counts, times and estimates."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import current_user

from app.extensions import db
from app.models import Task, TaskStatus, isoformat_z
from app.tasks import bp

# Binary units, named as such: 161 MiB is not 161 MB.
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")
ESTIMATE_HISTORY = 5  # past runs averaged for the estimate: recent enough to reflect today's machine


@bp.app_template_filter("filesize")
def filesize(size: int | None) -> str:
    """`161.1 MiB`, `12 bytes`: powers of 1024 with their IEC names."""
    if size is None:
        return ""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} {_UNITS[0]}" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


@bp.app_template_filter("duration")
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


@bp.app_template_filter("thousands")
def thousands(value: int | None) -> str:
    """`2,000,000` in English, `2.000.000` in Spanish: the language in use (as tasks.js writes them)."""
    from flask_babel import format_decimal

    return "" if value is None else format_decimal(value)


@bp.app_template_filter("utc_iso")
def utc_iso(value: datetime | None) -> str:
    """The `datetime` attribute of a `<time>`: ISO 8601 UTC with `Z`."""
    return isoformat_z(value) or ""


@bp.app_template_filter("utc_text")
def utc_text(value: datetime | None) -> str:
    """What a `<time>` says before the script localises it (and without scripts)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def download_name(username: str, task: Task) -> str:
    """`microblog-<username>-posts-<YYYY-MM-DD>.json`, dated the day the export finished (UTC)."""
    day = (task.finished_at or task.created_at).strftime("%Y-%m-%d")
    return f"microblog-{username}-posts-{day}.json"


@bp.app_template_global("estimate_seconds")
def estimate_seconds(name: str, count: int) -> float | None:
    """Roughly how long a task of this kind takes for `count` items, from the user's past runs; None without history."""
    if not current_user.is_authenticated or count <= 0:
        return None
    rows = db.session.execute(
        sa.select(Task.total, Task.started_at, Task.finished_at)
        .where(Task.user_id == current_user.id, Task.name == name, Task.status == TaskStatus.FINISHED,
               Task.total > 0, Task.started_at.is_not(None), Task.finished_at.is_not(None))
        .order_by(Task.created_at.desc()).limit(ESTIMATE_HISTORY)
    ).all()
    items = sum(r.total for r in rows)
    seconds = sum((r.finished_at - r.started_at).total_seconds() for r in rows)
    if not rows or seconds <= 0:
        return None
    return count * seconds / items


@bp.app_template_global("task_words")
def task_words(name: str) -> dict:
    """The registry's words for a kind of task (past tense, item noun, retry link)."""
    from app.progress import task_words as words

    return words(name)
