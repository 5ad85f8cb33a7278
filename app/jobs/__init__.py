"""Background jobs: the allow-list of what a user may launch, and how a launch happens."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import redis
import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _, lazy_gettext as _l
from rq import Callback, Queue
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.i18n import current_language
from app.jobs.callbacks import on_job_failure, on_job_stopped
from app.jobs.export import export_posts
from app.jobs.imports import import_posts
from app.logs import log_step
from app.models import Task, TaskStatus, User
from app.progress import publish


@dataclass(frozen=True)
class JobSpec:
    """A launchable job kind: the function RQ runs, and all that views, templates and the browser need.

    Adding a kind is one entry in JOBS plus its job function: nothing else names kinds.
    Its words are lazy strings (`_l`): each use reads them in the language of the request or task.
    """

    func: Callable[[str], None]
    description: Any  # the bar's title while it runs ("Exporting posts")
    # Words the pages use (issue 12), so templates and tasks.js never special-case a job by name.
    done_description: Any = ""  # past tense, for a finished task's title ("Exported posts")
    noun: Any = _l("items")  # what `current`/`total` count
    ready_title: Any = ""  # the tab title's news when it finished while hidden ("Export ready")
    done: Any = ""  # past tense, the status once finished without a message of its own ("posts imported")
    label: Any = ""  # the launch button on the owner's profile
    path: str = ""  # POST here launches one (the route is the kind's own view)
    what: Any = _l("task")  # the noun users read in flashes ("export")
    whats: Any = _l("tasks")  # its plural ("judging by your past exports")
    download: bool = False  # a finished task offers its file at /tasks/<id>/download
    upload: bool = False  # launched with a file (multipart `file`): "Try again" re-opens the form (GET path)
    lane: str = ""  # kinds sharing a lane never run together for one user; "" = a lane of its own
    form: str = "main/_launch_button.html"  # the profile's launch form (gets `name`, `kind`, `busy`)
    already: Any = ""  # refusal while one of this kind is active ("" = said from the description)
    launched: Any = _l("It has started. Its progress shows at the top of every page.")


# Requests name a key of this mapping; the function object, never a string, goes to RQ.
JOBS: dict[str, JobSpec] = {
    "export_posts": JobSpec(
        export_posts, _l("Exporting posts"), done_description=_l("Exported posts"), ready_title=_l("Export ready"),
        done=_l("emailed to you"), noun=_l("posts"), label=_l("Export your posts"),
        path="/export_posts", what=_l("export"), whats=_l("exports"), download=True, lane="posts",
        already=_l("An export of your posts is already in progress."),
        launched=_l("Your export has started. Its progress shows at the top of every page.")),
    "import_posts": JobSpec(
        import_posts, _l("Importing posts"), done_description=_l("Imported posts"), ready_title=_l("Import done"),
        done=_l("posts imported"), noun=_l("posts"), label=_l("Import posts"),
        path="/import_posts", what=_l("import"), whats=_l("imports"), upload=True, lane="posts",
        form="main/_import_form.html",
        already=_l("An import of your posts is already in progress."),
        launched=_l("Your import has started: the file is checked first, then its posts are added.")),
}


def job_spec(name: str) -> JobSpec:
    """The job a launch of `name` runs: a test deployment (TESTING_JOBS) runs one its test controls."""
    if current_app.config.get("TESTING_JOBS"):
        from tests.jobs import TEST_JOBS  # only a checkout with its tests has it; never the app itself

        return TEST_JOBS.get(name, JOBS[name])
    return JOBS[name]


def lane_of(name: str) -> str:
    """The exclusive group of a job kind (its own name unless the registry shares one)."""
    spec = JOBS.get(name)
    return (spec.lane if spec else "") or name


def launchers() -> list[tuple[str, list[tuple[str, JobSpec]]]]:
    """The launchable kinds grouped by lane, in registry order: the owner's forms on the profile."""
    lanes: dict[str, list[tuple[str, JobSpec]]] = {}
    for name, spec in JOBS.items():
        if spec.path:
            lanes.setdefault(lane_of(name), []).append((name, spec))
    return list(lanes.items())


def kind_fields(name: str) -> dict[str, Any]:
    """What the browser needs about a task's kind, added to every `task_progress` payload."""
    spec = JOBS.get(name)
    if spec is None:
        return {"lane": name, "noun": None, "done_text": None, "retry_url": None, "retry_method": None}
    return {
        "lane": lane_of(name),
        "noun": str(spec.noun),
        "done_text": str(spec.done) or None,
        "retry_url": spec.path or None,
        # A kind launched with a file cannot be re-posted empty: its retry opens the form.
        "retry_method": "get" if spec.upload else "post",
    }


class TaskAlreadyActive(Exception):
    """The user already has a task of this lane queued or running (`blocking` is it, when known)."""

    def __init__(self, name: str, blocking: Task | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.blocking = blocking

    def refusal(self) -> str:
        """The flashed message: which task is in the way."""
        spec = JOBS[self.name]
        if self.blocking is None or self.blocking.name == self.name:
            return str(spec.already) or _("“%(task)s” is already in progress.", task=spec.description)
        label = str(spec.label)
        return _("“%(task)s” is in progress; you can %(action)s once it has ended.",
                 task=self.blocking.description, action=label[0].lower() + label[1:])


class QueueUnavailable(Exception):
    """The task queue (Redis) could not take the job."""


def active_in_lane(user_id: int, lane: str) -> Task | None:
    """The user's queued or running task of a lane, if any."""
    return db.session.scalar(sa.select(Task).where(
        Task.user_id == user_id, Task.lane == lane, Task.status.in_(TaskStatus.active())))


def redis_client() -> redis.Redis:
    """This process's Redis client."""
    return current_app.extensions["redis"]


def task_queue() -> Queue:
    """The RQ queue tasks go to."""
    return Queue(current_app.config["TASK_QUEUE"], connection=redis_client())


def enqueue_job(task: Task) -> None:
    """Put a task's job on the queue, under the task's id (RedisError if Redis is away)."""
    task_queue().enqueue(
        job_spec(task.name).func,
        task.id,
        job_id=task.id,
        description=f"{task.name} for user {task.user_id}",
        job_timeout=current_app.config["TASK_TIMEOUT"],
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        on_failure=Callback(on_job_failure),
        on_stopped=Callback(on_job_stopped),
    )


def _as_inserted(task: Task) -> None:
    """Mark the columns the INSERT left out as what they now hold, NULL, instead of unknown."""
    state = sa.inspect(task)
    for column in state.mapper.column_attrs:
        if column.key in state.unloaded and all(c.server_default is None for c in column.columns):
            set_committed_value(task, column.key, None)


def launch_task(user: User, name: str, task_id: str | None = None) -> Task:
    """Create the Task row, commit it, then enqueue its job; the row never outlives a failed enqueue.

    `task_id` lets a caller prepare the job's input first (the import's upload is named after it).
    """
    spec = job_spec(name)
    task = Task(id=task_id or uuid.uuid4().hex, name=name, lane=lane_of(name), description=str(spec.description),
                user_id=user.id, language=current_language())
    db.session.add(task)
    try:
        db.session.flush()  # the unique partial index refuses a second active task of this lane
    except IntegrityError:
        db.session.rollback()
        raise TaskAlreadyActive(name, active_in_lane(user.id, lane_of(name))) from None
    # Kept as inserted: committed in the session it would expire, and the payload, the job and the
    # log below would read the row straight back (a fifth of a launch's CPU in py-spy).
    _as_inserted(task)
    db.session.expunge(task)
    db.session.commit()
    # Announce it before a worker can: published after the enqueue, `queued` could follow `started`.
    publish(task)
    try:
        enqueue_job(task)
    except redis.exceptions.RedisError as exc:
        # Pages that showed the `queued` bar learn it ended (best effort: Redis may be the fault).
        publish(task, status="failed", message=_("The task queue is unavailable; nothing was started."),
                seq=task.seq + 1)  # newer than the `queued` above, though the row is deleted, not updated
        db.session.delete(task)
        db.session.commit()
        raise QueueUnavailable(str(exc)) from exc
    log_step("queued", task.id, user.id, task.created_at, name=name)
    return task
