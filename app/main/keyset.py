"""Keyset ("older/newer") pagination of posts: no COUNT(*), no OFFSET.

A page is found from the (timestamp, id) of the post at its edge, carried in the query string
(`?before=…` for older posts, `?after=…` for newer ones), so every page costs one indexed range
read of POSTS_PER_PAGE + 1 rows however many posts there are and however deep the page is.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import abort, request
from flask_babel import gettext as _

from app.extensions import db
from app.models import Post

SEPARATOR = "_"
MAX_ID = 2**31 - 1  # PostgreSQL's integer: a larger id would be a DataError (500), not a 400


@dataclass
class KeysetPage:
    """One page of posts, newest first, with the cursors of its neighbours (None: no such page)."""

    items: list[Post]
    newer: str | None
    older: str | None
    keyset = True  # tells _pagination.html which links to draw

    def __iter__(self):
        return iter(self.items)


def encode(post: Post) -> str:
    """The cursor of a post: its timestamp (naive UTC, microseconds) and id."""
    return f"{post.timestamp.isoformat(timespec='microseconds')}{SEPARATOR}{post.id}"


def decode(cursor: str) -> tuple[datetime, int]:
    """(timestamp, id) of a cursor; a malformed one is the client's error (400)."""
    stamp, sep, ident = cursor.rpartition(SEPARATOR)
    try:
        if not sep or not ident.isdigit() or not 0 < int(ident) <= MAX_ID:
            raise ValueError(cursor)
        when = datetime.fromisoformat(stamp)
    except ValueError:
        abort(400, description=_("That page link is malformed."))
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when, int(ident)


def _key():
    return sa.tuple_(Post.timestamp, Post.id)


def _exists(query: sa.Select, condition: sa.ColumnElement) -> bool:
    """Whether any post of the query lies on that side of an edge (one indexed probe)."""
    return db.session.scalar(query.where(condition).with_only_columns(Post.id).order_by(None).limit(1)) is not None


def paginate(query: sa.Select, per_page: int) -> KeysetPage:
    """The page of `query` (posts, any order) selected by `before`/`after` in the request's arguments."""
    before, after = request.args.get("before"), request.args.get("after")
    if before is not None and after is not None:
        abort(400, description=_("A page link has either 'before' or 'after', not both."))
    # The author comes in the same query: each post's byline would otherwise be a query of its own.
    query = query.options(so.joinedload(Post.author))
    newest_first = query.order_by(None).order_by(Post.timestamp.desc(), Post.id.desc())
    if after is None:
        if before is not None:
            newest_first = newest_first.where(_key() < decode(before))
        rows = list(db.session.scalars(newest_first.limit(per_page + 1)))
        items = rows[:per_page]
        older = encode(items[-1]) if len(rows) > per_page else None
        newer = encode(items[0]) if before is not None and items and _exists(query, _key() > (items[0].timestamp, items[0].id)) else None
        if before is not None and not items:  # past the end (posts deleted): offer the way back
            newer = before
        return KeysetPage(items, newer, older)
    oldest_first = query.order_by(None).order_by(Post.timestamp, Post.id).where(_key() > decode(after))
    rows = list(db.session.scalars(oldest_first.limit(per_page + 1)))
    items = rows[:per_page][::-1]
    newer = encode(items[0]) if len(rows) > per_page else None
    older = encode(items[-1]) if items and _exists(query, _key() < (items[-1].timestamp, items[-1].id)) else None
    if not items:
        older = after
    return KeysetPage(items, newer, older)
