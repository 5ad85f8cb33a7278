"""The export job's structure (app/jobs/export.py), run in-process on a real database: once the file
is written, no error deletes it or fails the task. The real pipeline is in tests/test_export_delivery.py."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from app import mailer, progress
from app.jobs.export import export_path, export_posts
from app.models import TaskStatus
from tests.factories import get_task, make_task
from tests.sql_watch import compiled_anew, reads_task_rows, statements_run


def _file_of(app, task_id: str) -> Path:
    with app.app_context():
        return export_path(get_task(app, task_id))


def test_error_after_the_finish_keeps_the_file(app, make_user, make_posts, monkeypatch):
    """The finished UPDATE commits, then re-reading the row fails: the task stays finished, the file stays."""
    user = make_user()
    make_posts(user.id, 30)
    task_id = make_task(app, user.id)
    real_reload = progress._reload

    def reload_then_lose_the_database(tid: str):
        task = real_reload(tid)
        if task.status == TaskStatus.FINISHED:
            raise sa.exc.OperationalError("SELECT task", {}, Exception("server closed the connection"))
        return task

    monkeypatch.setattr(progress, "_reload", reload_then_lose_the_database)
    with app.app_context():
        export_posts(task_id)
    task = get_task(app, task_id)
    assert task.status == TaskStatus.FINISHED
    assert _file_of(app, task_id).is_file()


def test_any_email_error_finishes_with_a_readable_message(app, make_user, make_posts, monkeypatch):
    """An error of no SMTP kind while mailing (here UnicodeEncodeError) is a message, not a failure."""
    user = make_user()
    make_posts(user.id, 5)
    task_id = make_task(app, user.id)

    def send(msg, attachment=None):
        "ü".encode("ascii")

    monkeypatch.setattr(mailer, "send", send)
    with app.app_context():
        export_posts(task_id)
    task = get_task(app, task_id)
    assert task.status == TaskStatus.FINISHED
    assert task.message.startswith("Your export is ready to download, but the email could not be sent")
    assert "Unicode" not in task.message and "Error" not in task.message
    assert _file_of(app, task_id).is_file()


def test_result_file_resolves_under_this_export_dir(app, make_user):
    """Relative paths resolve under EXPORT_DIR; an old absolute path counts only when it lies under it."""
    from app.jobs.export import result_file

    user = make_user()
    root = Path(app.config["EXPORT_DIR"])
    (root / str(user.id)).mkdir(parents=True)
    (root / str(user.id) / "old.json").write_text("{}")
    outside = root.parent / "elsewhere.json"
    outside.write_text("{}")
    cases = {f"{user.id}/old.json": True, str(root / str(user.id) / "old.json"): True,
             str(outside): False, "../elsewhere.json": False, f"{user.id}/missing.json": False}
    for stored, found in cases.items():
        task_id = make_task(app, user.id, TaskStatus.FINISHED, result_path=stored)
        with app.app_context():
            assert (result_file(get_task(app, task_id)) is not None) is found, stored


def test_a_warmed_worker_compiles_no_statement_of_an_export(app, make_user, make_posts, monkeypatch):
    """Every SQL statement an export runs is already in the engine's cache after worker/warm.py's
    warm_statements, so a work horse (a fork of the warmed worker) compiles none of them anew."""
    from app.extensions import db
    from worker.warm import warm_statements

    user = make_user()
    make_posts(user.id, 30)
    task_id = make_task(app, user.id)
    monkeypatch.setattr(mailer, "send", lambda msg, attachment=None: None)
    with app.app_context():
        warm_statements()
        with statements_run(db.engine, compiled_anew) as compiled:
            export_posts(task_id)
    assert get_task(app, task_id).status == TaskStatus.FINISHED
    assert compiled == [], "\n\n".join(compiled)


def test_an_export_reads_its_task_row_twice(app, make_user, make_posts, monkeypatch):
    """Once when it starts and once when it ends: what was read stays readable after the commits,
    so the payloads, the file's path and the email never read the row again."""
    from app.extensions import db

    user = make_user()
    make_posts(user.id, 30)
    task_id = make_task(app, user.id)
    monkeypatch.setattr(mailer, "send", lambda msg, attachment=None: None)
    with app.app_context(), statements_run(db.engine, reads_task_rows) as reads:
        export_posts(task_id)
    assert get_task(app, task_id).status == TaskStatus.FINISHED
    # On MySQL the progress UPDATEs read their `seq` back (no RETURNING): those are not reads of the row.
    rows = [s for s in reads if not s.replace("\n", " ").startswith("SELECT task.seq ")]
    assert len(rows) == 2, "\n\n".join(rows)
