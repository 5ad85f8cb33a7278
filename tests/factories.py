"""Small factories and readers for the fast tests: rows made directly, pages read as a user would."""
from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa
from flask import Flask
from werkzeug.test import TestResponse

from app.extensions import db
from app.models import Post, Task, TaskStatus, User, utcnow

POST_BODY_RE = re.compile(r'<div class="post-body">(.*?)</div>', re.DOTALL)
TASK_ROW_RE = re.compile(r'data-task-row="([^"]+)"')
# The fields of the contract's `task_progress` event, and the time stamps we add to it.
EVENT_FIELDS = {"task_id", "name", "description", "progress", "status", "message", "download_url",
                "expires_at", "current", "total", "eta_seconds"}
EVENT_EXTRAS = {"created_at", "started_at", "finished_at", "seq",
                # issue 12: rate, size and delivery, and the registry's words for the pages
                "rate", "result_bytes", "delivery", "done_description", "noun", "ready_title", "retry_url",
                "lane", "done_text", "retry_method"}  # the kind's fields (app.jobs JOBS)


def make_task(app: Flask, user_id: int, status: TaskStatus = TaskStatus.QUEUED, *, name: str = "export_posts",
              progress: int = 0, age: timedelta = timedelta(0), ended_ago: timedelta | None = None,
              result_path: str | None = None, delivering: bool = False, message: str | None = None) -> str:
    """Insert a Task row directly (created `age` ago; ended `ended_ago` ago) and return its id."""
    now = utcnow()
    ended = status not in TaskStatus.active()
    finished_at = now - (ended_ago if ended_ago is not None else timedelta(0)) if ended else None
    with app.app_context():
        task = Task(id=uuid.uuid4().hex, name=name, description="Exporting posts", user_id=user_id, status=status,
                    progress=progress, message=message, delivering=delivering, created_at=now - age,
                    started_at=None if status == TaskStatus.QUEUED else now - age,
                    finished_at=finished_at, result_path=result_path)
        db.session.add(task)
        db.session.commit()
        return task.id


def set_status(app: Flask, task_id: str, status: TaskStatus) -> None:
    """Move a task row to another status directly (as a worker or a cancel would)."""
    with app.app_context():
        db.session.execute(sa.update(Task).where(Task.id == task_id).values(status=status))
        db.session.commit()


def get_task(app: Flask, task_id: str) -> Task | None:
    """A fresh, detached copy of a task row."""
    with app.app_context():
        task = db.session.get(Task, task_id)
        if task is not None:
            db.session.expunge(task)
        return task


def count(app: Flask, model: type, **where: Any) -> int:
    """How many rows of `model` match the given column values."""
    with app.app_context():
        stmt = sa.select(sa.func.count()).select_from(model)
        for column, value in where.items():
            stmt = stmt.where(getattr(model, column) == value)
        return db.session.scalar(stmt)


def find_user(app: Flask, username: str) -> User | None:
    """A detached copy of the user with that name, or None."""
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == username))
        if user is not None:
            db.session.expunge(user)
        return user


def post_rows(app: Flask, user_id: int) -> list[tuple[str, datetime]]:
    """(body, timestamp) of a user's posts in insertion (id) order."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Post.body, Post.timestamp).where(Post.user_id == user_id).order_by(Post.id)
        ).all()
        return [(body, stamp) for body, stamp in rows]


def text_of(response: TestResponse) -> str:
    """The page as a user reads it (HTML entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


def post_bodies(page: str) -> list[str]:
    """The post bodies a page shows, top to bottom."""
    return [body.strip() for body in POST_BODY_RE.findall(page)]


def ago(**kwargs: float) -> timedelta:
    """How long ago something happened, for `make_task(..., age=ago(hours=2))`."""
    return timedelta(**kwargs)


class ElementsById(HTMLParser):
    """Collects the attributes of every element that has an id."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Keep the attributes of elements with an id."""
        attributes = dict(attrs)
        if attributes.get("id"):
            self.by_id[attributes["id"]] = attributes


def shown(page: str, element_id: str) -> bool:
    """Whether the page has that element and does not hide it (the `hidden` attribute)."""
    parser = ElementsById()
    parser.feed(page)
    attributes = parser.by_id.get(element_id)
    return attributes is not None and "hidden" not in attributes
