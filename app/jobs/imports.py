"""Where a job is defined: the import of posts from an uploaded `posts.json` (the export's format).

Two streaming passes over the file (import_file.py), so a 20 MB file never sits in memory as
Python objects: the first checks every entry (0–50 % of the bar) and changes nothing; the
second inserts the posts in one transaction with the task's completion (50–100 %): all or none.
Runs in RQ work horses; never imports eventlet.
"""
from __future__ import annotations

import io
import logging
import resource
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _, ngettext
from rq.timeouts import JobTimeoutException

from app.extensions import db
from app.i18n import format_count
from app.jobs.import_file import BACKEND, BadImport, checked_entries, iter_entries, open_upload
from app.models import Post, Task, TaskStatus, count_new_posts, utcnow
from app.progress import ProgressPublisher, TaskCanceled, emit_payload, end_task, publish, task_payload, with_db_retry

log = logging.getLogger(__name__)

UPLOAD_MAX_BYTES = 20 * 1024 * 1024  # the contract's limit for one file
CHECK_SHARE = 50  # the first pass fills the bar's first half
BATCH_SIZE = 2000  # rows per INSERT and per "already present?" lookup
__all__ = ["BadImport", "import_posts", "remove_orphan_uploads", "remove_upload", "upload_path"]


def upload_dir() -> Path:
    """Where uploads wait for their import (EXPORT_DIR is shared by web and workers)."""
    return Path(current_app.config["EXPORT_DIR"]) / "uploads"


def upload_path(task_id: str) -> Path:
    """The uploaded file of an import task: named after the task, so anyone can clean it up."""
    return upload_dir() / f"{task_id}.json"


def remove_upload(task_id: str) -> None:
    """Delete an import's upload (and a half-received one); nothing happens for other tasks."""
    path = upload_path(task_id)
    for candidate in (path, path.with_name(path.name + ".part")):
        candidate.unlink(missing_ok=True)


def remove_orphan_uploads(active_ids: set[str], grace: float) -> int:
    """Delete uploads no active task owns, once untouched for `grace` seconds (canceled while queued, web crash)."""
    removed = 0
    try:
        candidates = list(upload_dir().iterdir())
    except FileNotFoundError:
        return 0
    now = time.time()
    for path in candidates:
        task_id = path.name.split(".", 1)[0]
        try:
            if task_id not in active_ids and now - path.stat().st_mtime > grace:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # its own job removed it meanwhile
    return removed


def check_file(path: Path, publisher: ProgressPublisher) -> int:
    """The first pass: check every entry, advancing the bar by bytes read; returns the number of posts."""
    size = max(path.stat().st_size, 1)
    count = 0
    with open_upload(path) as stream:
        for count, _entry in enumerate(iter_entries(stream), start=1):
            if count % 1000 == 0:
                publisher.advance(stream.tell() * CHECK_SHARE // size)
    return count


# --- writing -------------------------------------------------------------------------------------

def insert_file(task: Task, path: Path, total: int) -> tuple[int, int]:
    """The second pass, one transaction: insert every post not already present, then finish the task.

    The task's completion is the transaction's last statement, conditional on the row still being
    `started`: a cancel that won rolls the whole import back, and no post survives a canceled task.
    """
    if db.engine.dialect.name == "sqlite":
        return _insert_staged(task.id, task.user_id, path, total, _InsertProgress(task, total))
    conn = db.session.connection()
    posts = Post.__table__
    # Posts present before this import; rows it inserts get higher ids (they may repeat each other).
    before = conn.execute(sa.select(sa.func.max(posts.c.id))).scalar() or 0
    has_posts = conn.execute(sa.select(posts.c.id).where(posts.c.user_id == task.user_id).limit(1)).first()
    lookup = (
        sa.select(posts.c.timestamp, posts.c.body)
        .where(posts.c.user_id == task.user_id, posts.c.id <= before,
               posts.c.timestamp.in_(sa.bindparam("stamps", expanding=True)))
    )
    reporter = _InsertProgress(task, total)
    added = skipped = done = 0
    with open_upload(path) as stream:
        for batch in _batches(checked_entries(stream)):
            _still_running(conn, task.id)
            if has_posts:
                present = set(conn.execute(lookup, {"stamps": sorted({s for _body, s in batch})}).all())
                fresh = [(b, s) for b, s in batch if (s, b) not in present]
            else:
                fresh = batch
            _insert(conn, task.user_id, fresh)
            added, skipped, done = added + len(fresh), skipped + len(batch) - len(fresh), done + len(batch)
            reporter.report(done)
    if done != total:  # the checked file changed under us: never commit what was not checked
        raise BadImport(_("The file changed while it was imported.") + " " + _("Nothing was imported."))
    message = finished_message(added, skipped)
    count_new_posts(conn, task.user_id, added)
    if not _finish(conn, task.id, message):
        db.session.rollback()
        raise TaskCanceled(task.id)
    db.session.commit()
    return added, skipped


def _finish(conn: sa.Connection, task_id: str, message: str) -> bool:
    """End the task finished inside the import's transaction, unless a cancel ended it first."""
    ended = conn.execute(
        sa.update(Task).where(Task.id == task_id, Task.status == TaskStatus.STARTED)
        # seq + 1 as every state change does (app/progress.py): relays and pages drop an event whose
        # seq is not newer than the last one they saw, so an unbumped `finished` would never arrive.
        .values(status=TaskStatus.FINISHED, progress=100, message=message, finished_at=utcnow(), seq=Task.seq + 1)
    )
    return ended.rowcount == 1


# SQLite's TEMP tables live in a database of their own: filling one leaves the main file unlocked.
_STAGE = "CREATE TEMP TABLE IF NOT EXISTS import_stage (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, stamp TEXT NOT NULL)"
# SQLite runs the SELECT to completion before inserting, so NOT EXISTS sees only the posts that were
# there before: duplicates inside the file are all kept, as the export wrote them.
_MOVE = (f"INSERT INTO {Post.__tablename__} (body, timestamp, user_id) "
         "SELECT s.body, s.stamp, ? FROM import_stage s WHERE NOT EXISTS ("
         f"SELECT 1 FROM {Post.__tablename__} p WHERE p.user_id = ? AND p.timestamp = s.stamp AND p.body = s.body) "
         "ORDER BY s.seq")


def _insert_staged(task_id: str, user_id: int, path: Path, total: int, reporter: _InsertProgress) -> tuple[int, int]:
    """SQLite: stage the rows in a TEMP table, then move them with one INSERT … SELECT that also ends the task.

    SQLite has one writer: this way other writers (the web's posts, other tasks' progress) wait for
    the short final statement only, not for the whole second pass.
    """
    with db.engine.connect() as conn:  # one connection throughout: a TEMP table is per connection
        conn.exec_driver_sql(_STAGE)
        conn.exec_driver_sql("DELETE FROM import_stage")
        conn.commit()
        done = 0
        with open_upload(path) as stream:
            for batch in _batches(checked_entries(stream)):
                _still_running(conn, task_id)
                conn.exec_driver_sql("INSERT INTO import_stage (body, stamp) VALUES (?, ?)",
                                     [(b, s.isoformat(sep=" ", timespec="microseconds")) for b, s in batch])
                conn.commit()  # also ends the read snapshot: the final write must not start from a stale one
                done += len(batch)
                reporter.report(done)
        if done != total:
            raise BadImport(_("The file changed while it was imported.") + " " + _("Nothing was imported."))
        try:
            began = time.perf_counter()
            added = conn.exec_driver_sql(_MOVE, (user_id, user_id)).rowcount
            count_new_posts(conn, user_id, added)
            if not _finish(conn, task_id, finished_message(added, total - added)):
                conn.rollback()
                raise TaskCanceled(task_id)
            conn.commit()
            log.info("import %s: the database was locked for %.2f s (moving %d posts)", task_id,
                     time.perf_counter() - began, added)
        finally:
            conn.rollback()  # a no-op after the commit
            conn.exec_driver_sql("DROP TABLE IF EXISTS temp.import_stage")
            conn.commit()
    return added, total - added


def _batches(entries: Iterator[tuple[str, datetime]]) -> Iterator[list[tuple[str, datetime]]]:
    """Group entries BATCH_SIZE at a time."""
    batch: list[tuple[str, datetime]] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _still_running(conn: sa.Connection, task_id: str) -> None:
    """Raise TaskCanceled once a cancel has ended the row (read without locking it)."""
    status = conn.execute(sa.select(Task.status).where(Task.id == task_id)).scalar()
    if status != TaskStatus.STARTED:
        raise TaskCanceled(task_id)


def _insert(conn: sa.Connection, user_id: int, rows: list[tuple[str, datetime]]) -> None:
    """Insert rows in file order (ids ascending: equal timestamps keep their order)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # The driver's executemany, ~2x faster than Core; the text SQLAlchemy's DateTime writes.
        conn.exec_driver_sql(
            f"INSERT INTO {Post.__tablename__} (body, timestamp, user_id) VALUES (?, ?, ?)",
            [(body, stamp.isoformat(sep=" ", timespec="microseconds"), user_id) for body, stamp in rows],
        )
    elif conn.dialect.driver == "psycopg2":
        _copy(conn, user_id, rows)
    else:
        conn.execute(sa.insert(Post.__table__),
                     [{"body": body, "timestamp": stamp, "user_id": user_id} for body, stamp in rows])


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy(conn: sa.Connection, user_id: int, rows: list[tuple[str, datetime]]) -> None:
    """PostgreSQL: COPY in text format, ~2x faster than a multi-row INSERT here (same transaction)."""
    text = "".join(f"{body.translate(_COPY_ESCAPES)}\t{stamp.isoformat(sep=' ', timespec='microseconds')}\t{user_id}\n"
                   for body, stamp in rows)
    with conn.connection.dbapi_connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {Post.__tablename__} (body, timestamp, user_id) FROM STDIN", io.StringIO(text))


class _InsertProgress:
    """Events for the second half of the bar; the row stays at 50 % until the transaction commits."""

    def __init__(self, task: Task, total: int, min_interval: float = 0.1) -> None:
        self.base = {**task_payload(task), "progress": CHECK_SHARE, "total": total}
        # These events change no row (the row stays at 50 % until the insert commits), so they take
        # seqs between the row's current one and the finish's (seq + 1): relays and pages keep them
        # in order and still drop any of them that arrives after the end.
        with db.engine.connect() as conn:
            self.base_seq = conn.scalar(sa.select(Task.seq).where(Task.id == task.id)) or 0
        self.user_id = task.user_id
        self.total = max(total, 1)
        self.min_interval = min_interval
        self.percent = CHECK_SHARE
        self.last = float("-inf")  # the first batch is always announced

    def report(self, done: int) -> None:
        """Announce `done` of `total` posts written (throttled; never 100, that is the finished event)."""
        percent = min(99, CHECK_SHARE + done * (100 - CHECK_SHARE) // self.total)
        if percent <= self.percent or time.monotonic() - self.last < self.min_interval:
            return
        self.percent, self.last = percent, time.monotonic()
        emit_payload({**self.base, "progress": percent, "current": done, "seq": self.base_seq + done / (self.total + 1),
                      "message": _("Adding posts: %(done)s of %(total)s…", done=format_count(done), total=format_count(self.total))}, self.user_id)


def finished_message(added: int, skipped: int) -> str:
    """What the finished task says."""
    message = ngettext("%(count)s post imported.", "%(count)s posts imported.", added, count=format_count(added))
    if skipped:
        message += " " + ngettext("%(count)s post skipped as already present.", "%(count)s posts skipped as already present.",
                                  skipped, count=format_count(skipped))
    return message


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux: VmHWM; elsewhere ru_maxrss)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the job -------------------------------------------------------------------------------------

def import_posts(task_id: str) -> None:
    """RQ job: check the uploaded file entirely, then add its posts in one transaction."""
    publisher = ProgressPublisher(task_id)
    try:
        task = publisher.start()
        if task is None:
            log.info("task %s ended before it started; nothing to do", task_id)
            return
        refusal = _run(task, publisher)
    except Exception as exc:
        db.session.rollback()
        log.exception("import %s failed", task_id)
        remove_upload(task_id)
        end_task(task_id, TaskStatus.FAILED, describe_failure(exc))
        raise  # RQ records the job as failed too, with the traceback, for operators
    finally:
        remove_upload(task_id)  # before the ending is announced; RQ hooks and the sweep cover a dead work horse
    if refusal is not None:
        end_task(task_id, TaskStatus.FAILED, refusal)
    else:
        publish_ending(task_id)


def _run(task: Task, publisher: ProgressPublisher) -> str | None:
    """Both passes; the user's reason if the file was refused, else None (finished, or canceled)."""
    path = upload_path(task.id)
    task_id = task.id
    began = time.perf_counter()
    try:
        total = check_file(path, publisher)
        checked = time.perf_counter()
        added, skipped = with_db_retry(lambda: insert_file(task, path, total), attempts=3)
    except TaskCanceled:
        db.session.rollback()
        log.info("import %s was canceled; nothing was imported", task_id)
        return None
    except BadImport as exc:  # the user's file, not our fault: no traceback, no RQ failure
        db.session.rollback()
        log.info("import %s refused: %s", task_id, exc)
        return str(exc)[:512]
    except FileNotFoundError:
        db.session.rollback()
        return _("The uploaded file is no longer available. Please upload it again.")
    done = time.perf_counter()
    log.info("import %s: %d posts checked in %.2f s, %d added and %d skipped in %.2f s (%.0f posts/s overall); "
             "peak RSS %.1f MB; parser %s", task_id, total, checked - began, added, skipped, done - checked,
             total / max(done - began, 1e-9), peak_rss_mb(), BACKEND)
    return None


def publish_ending(task_id: str) -> None:
    """Announce how the task ended (finished: committed with the posts; canceled: already announced)."""
    db.session.rollback()  # a fresh read: SQLite's import committed on a connection of its own
    task = db.session.get(Task, task_id)
    if task is not None and task.status == TaskStatus.FINISHED:
        publish(task)
    db.session.commit()


def describe_failure(exc: BaseException) -> str:
    """What a user reads when an import fails for a reason other than the file."""
    if isinstance(exc, JobTimeoutException):
        return _("The import took too long and was stopped. Nothing was imported.")
    if isinstance(exc, sa.exc.OperationalError):
        return _("The database was unavailable during the import. Nothing was imported; please try again.")
    if isinstance(exc, OSError):
        return _("The uploaded file could not be read (%(reason)s). Nothing was imported.",
                 reason=exc.strerror or type(exc).__name__)
    return _("The import failed unexpectedly (%(reason)s). Nothing was imported; please try again.",
             reason=type(exc).__name__)
