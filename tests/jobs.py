"""Test-only jobs: the real export, held "still running" until the test releases it.

Registered only when a deployment runs with TESTING_JOBS=1 (see `app.jobs.job_spec`), and only
where this module exists: it lives under tests/, never in the app. A test no longer needs a
million posts and a fast or slow machine to catch an export mid-way: it releases progress step by
step through a gate, so the export runs for exactly as long as the test wants, on any runner.

The gate is a small file under EXPORT_DIR (shared by the test, web and workers), not a Redis key:
fault tests stop and restart Redis while an export is held, and must still release it meanwhile.

Everything else is the real thing: the launch path, the Task row, ProgressPublisher, the file,
the email, cancel (the stop command, or the row noticed while waiting), the failure hooks.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from unittest import mock

import sqlalchemy as sa
from flask import current_app

from app.extensions import db
from app.jobs import JOBS, JobSpec
from app.jobs import export
from app.models import Task, TaskStatus
from app.progress import ProgressPublisher, TaskCanceled

POLL = 0.05  # seconds between looks at the gate: a test's release is seen within 50 ms
ROW_CHECK = 0.5  # seconds between looks at the row while held: a cancel whose stop command was lost


def gate_path(export_dir: str | Path, task_id: str) -> Path:
    """The file holding the percent up to which a held export may advance (absent: 0)."""
    return Path(export_dir) / ".testing-gates" / f"gate-{task_id}"


def release(export_dir: str | Path, task_id: str, percent: int) -> None:
    """Open a held export's gate up to `percent` (100: let it finish); atomic for the reader."""
    path = gate_path(export_dir, task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(percent))
    os.replace(tmp, path)


def release_all(export_dir: str | Path, percent: int) -> None:
    """Open every export's gate up to `percent` unless its own gate says otherwise (100: run free)."""
    release(export_dir, "default", percent)


def released(export_dir: str | Path, task_id: str) -> int:
    """How far the test has released a held export (its own gate, else the deployment's default)."""
    for name in (task_id, "default"):
        try:
            return int(gate_path(export_dir, name).read_text() or 0)
        except (FileNotFoundError, ValueError):
            continue
    return 0


class GatedPublisher(ProgressPublisher):
    """A ProgressPublisher that advances only as far as the test has released."""

    def __init__(self, task_id: str, **_: object) -> None:
        super().__init__(task_id, min_interval=0)  # each release is one event, at once

    def advance(self, percent: int, current: int | None = None, total: int | None = None) -> None:
        """Advance to `percent` through every step the test releases, waiting at the gate for more."""
        target = max(0, min(99, int(percent)))
        while self.percent < target:
            allowed = self._wait_above(self.percent)
            before = self.percent
            step = min(target, allowed)
            # The counts a held step shows: the share of `current` its percent stands for.
            shown = None if current is None else current * step // max(target, 1)
            super().advance(step, shown, total)
            if self.percent == before:  # the database was busy: the step is retried
                time.sleep(POLL)

    def _wait_above(self, percent: int) -> int:
        """Block until the gate allows more than `percent`; raise TaskCanceled if the row ended meanwhile."""
        next_row_check = time.monotonic() + ROW_CHECK
        while True:
            allowed = released(current_app.config["EXPORT_DIR"], self.task_id)
            if allowed > percent:
                return allowed
            if time.monotonic() > next_row_check:
                self._check_row()
                next_row_check = time.monotonic() + ROW_CHECK
            time.sleep(POLL)

    def _check_row(self) -> None:
        """Notice a cancel (or a sweep) that ended the row while the job was held."""
        try:
            status = db.session.scalar(sa.select(Task.status).where(Task.id == self.task_id))
            db.session.commit()
        except sa.exc.OperationalError:
            db.session.rollback()
            return
        if status != TaskStatus.STARTED:
            raise TaskCanceled(self.task_id)


def gated_export_posts(task_id: str) -> None:
    """RQ job: the real export, with its progress held at the gate (the user needs at least one post)."""
    # Runs in a forked work horse: the patch lives and dies with this one job's process.
    with mock.patch.object(export, "ProgressPublisher", GatedPublisher):
        export.export_posts(task_id)


# What a test deployment launches instead of the production job of the same name.
TEST_JOBS: dict[str, JobSpec] = {
    # The registry's own words (in the launcher's language), only the function replaced.
    "export_posts": dataclasses.replace(JOBS["export_posts"], func=gated_export_posts),
}
