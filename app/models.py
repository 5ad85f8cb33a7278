"""Database models: users, their posts, and the tasks they run."""
from __future__ import annotations

import enum
from datetime import datetime, timezone

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db, login


def utcnow() -> datetime:
    """Naive UTC now: both SQLite and PostgreSQL store it the same way."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def isoformat_z(value: datetime | None) -> str | None:
    """ISO 8601 UTC with microseconds always present and a `Z` suffix."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"  # ~5x faster than strftime


class User(UserMixin, db.Model):
    """An account."""

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(64), index=True, unique=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(120), index=True, unique=True)
    password_hash: so.Mapped[str | None] = so.mapped_column(sa.String(256))
    # Maintained by every writer of posts in the same transaction (count_new_posts): the profile
    # shows it without a COUNT(*) over a million rows, which would freeze the web process (issue 10).
    post_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # Operations (issue 9): admins see /admin/rq and /metrics; set with `flask set-admin`.
    is_admin: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())

    posts: so.WriteOnlyMapped[Post] = so.relationship(back_populates="author", passive_deletes=True)
    tasks: so.WriteOnlyMapped[Task] = so.relationship(back_populates="user", passive_deletes=True)

    # The login session this object was loaded for (set by the user loader and at login). Flask-Login
    # stores get_id() in the session and remember-me cookies, so both carry that session's random id,
    # which logout deletes: a replayed cookie then names nobody. Not a column.
    session_id = None

    def __repr__(self) -> str:
        return f"<User {self.username}>"

    def get_id(self) -> str | None:
        """Flask-Login: the login session's id, never the user's number."""
        return self.session_id

    def set_password(self, password: str, method: str = "scrypt") -> None:
        """Store a salted hash of the password."""
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        """Whether the password matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)


@login.user_loader
def load_user(session_id: str) -> User | None:
    """Flask-Login: the user behind a login session; none once that session was ended (logout)."""
    from app.sessions import load_session_user  # the session table's rules live there

    return load_session_user(session_id)


# --- login sessions (security) ---------------------------------------------------------------------

class UserSession(db.Model):
    """One login (a browser): its random id is what the session and remember-me cookies carry."""

    __tablename__ = "user_session"

    id: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey(User.id, ondelete="CASCADE"), index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    last_seen: so.Mapped[datetime] = so.mapped_column(default=utcnow)


def count_new_posts(connection: sa.Connection | so.Session, user_id: int, added: int) -> None:
    """Add `added` to a user's maintained post count, in the caller's transaction."""
    if added:
        connection.execute(sa.update(User.__table__).where(User.__table__.c.id == user_id)
                           .values(post_count=User.__table__.c.post_count + added))


class Post(db.Model):
    """A post of at most 140 characters."""

    __table_args__ = (
        # Serves the profile (newest first) and the export's keyset scan (oldest first).
        sa.Index("ix_post_user_id_timestamp_id", "user_id", "timestamp", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    body: so.Mapped[str] = so.mapped_column(sa.String(140))
    timestamp: so.Mapped[datetime] = so.mapped_column(index=True, default=utcnow)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey(User.id, ondelete="CASCADE"))

    author: so.Mapped[User] = so.relationship(back_populates="posts")

    def __repr__(self) -> str:
        return f"<Post {self.body}>"


class TaskStatus(str, enum.Enum):
    """Lifecycle of a task, exactly as sent on the wire."""

    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    @classmethod
    def active(cls) -> tuple[TaskStatus, ...]:
        """Statuses of a task that has not ended."""
        return (cls.QUEUED, cls.STARTED)


_ACTIVE_SQL = "status IN ('queued', 'started')"


def _lane_of(context: sa.engine.interfaces.ExecutionContext) -> str:
    """A new row's lane, from the job registry (rows made outside launch_task get it too)."""
    from app.jobs import lane_of  # the registry imports this module

    return lane_of(context.get_current_parameters()["name"])


class Task(db.Model):
    """One background job of a user; the row is the truth, RQ only runs it."""

    __table_args__ = (
        # One active task per lane per user: two concurrent clicks cannot both insert, and kinds
        # sharing a lane (the export and the import of posts) never run together.
        # MySQL/MariaDB have no partial index: migrations there put this unique index over a
        # generated column instead (NULL once the task ended).
        sa.Index(
            "uq_task_one_active_per_user",
            "user_id",
            "lane",
            unique=True,
            sqlite_where=sa.text(_ACTIVE_SQL),
            postgresql_where=sa.text(_ACTIVE_SQL),
        ),
        sa.Index("ix_task_user_id_created_at", "user_id", "created_at"),
        sa.Index("ix_task_status", "status"),
        # The sweeper re-announces recent endings (app/jobs/reannounce.py); retention finds old ones.
        sa.Index("ix_task_finished_at", "finished_at"),
    )

    id: so.Mapped[str] = so.mapped_column(sa.String(36), primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(64))
    # The job kind's exclusive group (app.jobs JOBS): at most one active task per user and lane.
    lane: so.Mapped[str] = so.mapped_column(sa.String(64), default=_lane_of)
    description: so.Mapped[str] = so.mapped_column(sa.String(128))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey(User.id, ondelete="CASCADE"))
    status: so.Mapped[TaskStatus] = so.mapped_column(
        sa.Enum(TaskStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e],
                validate_strings=True),
        default=TaskStatus.QUEUED,
    )
    progress: so.Mapped[int] = so.mapped_column(default=0)
    message: so.Mapped[str | None] = so.mapped_column(sa.String(512))
    # Set once the result is being delivered (email): from then on cancel answers 409.
    delivering: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    started_at: so.Mapped[datetime | None] = so.mapped_column()
    finished_at: so.Mapped[datetime | None] = so.mapped_column()
    result_path: so.Mapped[str | None] = so.mapped_column(sa.String(512))
    # Written by the running job every second or two: the sweep fails a started task whose beat stopped.
    heartbeat_at: so.Mapped[datetime | None] = so.mapped_column()
    # Bumped by every UPDATE that changes what users see, in that same UPDATE: events carry it, so
    # pages and socket servers drop an event older than one they already have (see app/progress.py).
    seq: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # Operations (issue 9): when retention (or the owner) deleted the export file; then 410.
    file_deleted_at: so.Mapped[datetime | None] = so.mapped_column()
    # What the history and the bar tell (issue 12): items done / in all, the file's size, how it was
    # delivered ("attached", "linked", or None when no email went out).
    current: so.Mapped[int | None] = so.mapped_column()
    total: so.Mapped[int | None] = so.mapped_column()
    result_bytes: so.Mapped[int | None] = so.mapped_column(sa.BigInteger)
    delivery: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    # The launcher's language: the worker writes the task's messages and email in it.
    language: so.Mapped[str] = so.mapped_column(sa.String(8), default="en", server_default="en")

    user: so.Mapped[User] = so.relationship(back_populates="tasks")

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name} {self.status.value}>"

    @property
    def is_active(self) -> bool:
        """Whether the task is still queued or running."""
        return self.status in TaskStatus.active()

    @property
    def has_download(self) -> bool:
        """Whether a finished export file can be downloaded."""
        return self.status == TaskStatus.FINISHED and bool(self.result_path) and self.file_deleted_at is None

    @property
    def duration_seconds(self) -> float | None:
        """How long the task ran, once it has ended."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())
