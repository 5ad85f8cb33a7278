"""Every ending reaches every open page: the deployment's sweeper announces each ending a second time.

Whoever ends a task commits the row, then publishes its terminal event; Redis pub/sub delivers it
at most once. Between the two steps the publisher can die (a web process killed mid-cancel, a work
horse killed as it finished), and a socket server can be unsubscribed at that moment (it just
started, or Redis just came back). Pages that reconnect get the row in their snapshot, but a page
whose socket stayed open would show a running bar for ever.

So the sweeper (one process per deployment, app/jobs/sweep.py) publishes once more the terminal
event of every task that ended since its last pass. A repeat costs nothing: every event carries
its row's `seq`, and the relays (app/socket_queue.py) and pages drop what they already showed.
A watermark in Redis (the newest `finished_at` announced) hands the work over between sweepers.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis
import sqlalchemy as sa

from app.extensions import db
from app.i18n import task_locale
from app.models import Task, utcnow
from app.progress import TERMINAL, publish

log = logging.getLogger(__name__)

WATERMARK = "microblog:sweep:announced"
# An ending younger than this is left to whoever ended it (still publishing); it also covers clocks
# of different machines that disagree by less (finished_at is written by the ending process's clock).
SETTLE = timedelta(seconds=2)
# With no watermark (first pass, or Redis lost it), look this far back: a page open that long ago
# and not reconnected since would rather be repaired late than never.
LOOKBACK = timedelta(minutes=2)
BATCH = 500  # endings per pass at most: bounded work in a web process's hub; the rest next pass


def reannounce_endings(connection: redis.Redis, limit: int = BATCH) -> int:
    """Publish again the terminal event of each task that ended since the last pass; how many."""
    upto = utcnow() - SETTLE
    raw = connection.get(WATERMARK)
    since = _parse(raw) if raw else None
    if since is None or since < upto - LOOKBACK:
        since = upto - LOOKBACK
    rows = db.session.scalars(
        sa.select(Task).where(Task.finished_at > since, Task.finished_at <= upto, Task.status.in_(TERMINAL))
        .order_by(Task.finished_at).limit(limit)).all()
    db.session.commit()  # end the read transaction before publishing
    for task in rows:
        with task_locale(task.id, task.language):  # the event's words in the task's own language
            publish(task)
    mark = rows[-1].finished_at if len(rows) == limit else upto
    connection.set(WATERMARK, mark.isoformat(), ex=int(LOOKBACK.total_seconds()) * 5)
    if rows:
        log.debug("re-announced %d ended tasks up to %s", len(rows), mark.isoformat())
    return len(rows)


def _parse(raw: bytes | str) -> datetime | None:
    """A watermark as stored (naive UTC, like the rows), or None if unreadable."""
    try:
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw).replace(tzinfo=None)
    except ValueError:
        return None
