"""How tasks read on pages: download names, estimates and words (the filters are app.formatting's)."""
from __future__ import annotations

import sqlalchemy as sa
from flask_login import current_user

from app.extensions import db
from app.models import Task, TaskStatus
from app.tasks import bp

ESTIMATE_HISTORY = 5  # past runs averaged for the estimate: recent enough to reflect today's machine


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
