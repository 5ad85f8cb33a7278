"""Operations in-process: who sees /admin/rq and /metrics, the metric names, the task CLI, retention."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from app.models import Task, TaskStatus, utcnow
from tests.factories import get_task, make_task, text_of


@pytest.fixture
def admin(app, make_user, runner):
    """A user made admin through `flask set-admin`."""
    user = make_user("root")
    result = runner.invoke(args=["set-admin", "root"])
    assert result.exit_code == 0 and "root is now an admin" in result.output, result.output
    return user


def finished_export(app, user_id: int, ended_ago: timedelta = timedelta(0)) -> tuple[str, Path]:
    """A finished export task with a real file in EXPORT_DIR."""
    path = Path(app.config["EXPORT_DIR"]) / str(user_id) / "x.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"posts": []}\n')
    task_id = make_task(app, user_id, TaskStatus.FINISHED, progress=100, ended_ago=ended_ago, result_path=str(path))
    renamed = path.with_name(f"{task_id}.json")
    path.rename(renamed)
    with app.app_context():
        from app.extensions import db

        # As the export stores it: relative to EXPORT_DIR (the retention must find it from there).
        db.session.get(Task, task_id).result_path = f"{user_id}/{task_id}.json"
        db.session.commit()
    return task_id, renamed


@pytest.mark.parametrize("path", ["/admin/rq/", "/admin/rq/0/view/workers", "/metrics"])
def test_operations_pages_are_for_admins_only(app, client, auth, make_user, admin, path):
    """Anonymous: 404; a normal user: 404; an admin: 200 (the dashboard, the metrics)."""
    make_user("alice")
    assert client.get(path).status_code == 404
    auth.login("alice")
    assert client.get(path).status_code == 404
    auth.logout()
    auth.login("root")
    response = client.get(path)
    assert response.status_code == 200
    if path.startswith("/admin/rq"):
        assert "RQ" in response.get_data(as_text=True)


def test_dashboard_static_files_are_served_locally(app, client, auth, admin):
    """The dashboard's pages load their scripts and styles from /admin/rq/static, never a CDN."""
    auth.login("root")
    page = client.get("/admin/rq/").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert assets and all(a.startswith("/admin/rq/static/") for a in assets), assets
    assert client.get(assets[0]).status_code == 200


def test_dashboard_actions_refuse_other_sites(app, client, auth, admin):
    """A requeue posted from another site is refused even for an admin (the dashboard has no CSRF token)."""
    auth.login("root")
    refused = client.post("/admin/rq/job/nope/requeue", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert client.post("/admin/rq/job/nope/requeue").status_code == 403  # neither Origin nor Referer


def test_set_admin_revoke(app, client, auth, admin, runner):
    """--revoke takes the role away: the dashboard is 404 again; an unknown name is a clear error."""
    assert runner.invoke(args=["set-admin", "root", "--revoke"]).exit_code == 0
    auth.login("root")
    assert client.get("/admin/rq/").status_code == 404
    result = runner.invoke(args=["set-admin", "nobody"])
    assert result.exit_code != 0 and "No user named 'nobody'" in result.output


def test_metrics_token(app, client):
    """With METRICS_TOKEN set, its bearer reads /metrics; a wrong or missing token gets 404."""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404  # unset: never
    app.config["METRICS_TOKEN"] = "s3cret-token"
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics").status_code == 404


def test_metrics_names_and_counts(app, client, auth, admin, make_user):
    """The contract's metric names, with task counts by name and status and a duration histogram."""
    alice = make_user("alice")
    for status in (TaskStatus.FINISHED, TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELED):
        make_task(app, alice.id, status, age=timedelta(seconds=3))
    auth.login("root")
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.get_data(as_text=True)
    for name in ("microblog_tasks_total", "microblog_task_duration_seconds_bucket", "microblog_queue_depth",
                 "microblog_workers", "microblog_sockets_connected", "microblog_progress_events_total"):
        assert f"\n{name}" in text, name
    assert 'microblog_tasks_total{name="export_posts",status="finished"} 2.0' in text
    assert 'microblog_tasks_total{name="export_posts",status="failed"} 1.0' in text
    assert 'microblog_tasks_total{name="export_posts",status="queued"} 4.0' in text  # every one launched
    assert 'microblog_tasks_total{name="export_posts",status="started"} 4.0' in text  # make_task sets started_at
    assert 'microblog_task_duration_seconds_count{name="export_posts"} 4.0' in text
    assert 'microblog_task_duration_seconds_bucket{le="5.0",name="export_posts"} 4.0' in text
    assert 'microblog_task_duration_seconds_bucket{le="2.5",name="export_posts"} 0.0' in text
    assert 'microblog_queue_depth{queue="microblog-tasks"}' in text
    assert 'microblog_workers{state="idle"} 0.0' in text


def test_healthz_in_process(app, client):
    """No login needed: the database and Redis answer, no worker is running."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "ok", "workers": 0}


def test_tasks_list_show_fail(app, runner, make_user):
    """list filters by status and user; show prints row and job; fail ends a stuck task once."""
    alice, bob = make_user("alice"), make_user("bob")
    stuck = make_task(app, alice.id, TaskStatus.STARTED, progress=40)
    done = make_task(app, bob.id, TaskStatus.FINISHED)
    listed = runner.invoke(args=["tasks", "list"]).output
    assert stuck in listed and done in listed
    only = runner.invoke(args=["tasks", "list", "--status", "started"]).output
    assert stuck in only and done not in only
    by_user = runner.invoke(args=["tasks", "list", "--user", "bob"]).output
    assert done in by_user and stuck not in by_user
    shown = runner.invoke(args=["tasks", "show", stuck]).output
    assert "status      started" in shown and "progress    40" in shown and "job         none in Redis" in shown
    failed = runner.invoke(args=["tasks", "fail", stuck, "--message", "Stuck; ended by ops."])
    assert failed.exit_code == 0, failed.output
    task = get_task(app, stuck)
    assert task.status == TaskStatus.FAILED and task.message == "Stuck; ended by ops." and task.finished_at
    again = runner.invoke(args=["tasks", "fail", stuck])
    assert again.exit_code != 0 and "already ended" in again.output
    assert runner.invoke(args=["tasks", "show", "nope"]).exit_code != 0


def test_tasks_retry_launches_a_new_task(app, runner, make_user):
    """retry makes a new task for the same user through launch_task, refused while one is active."""
    alice = make_user("alice")
    failed = make_task(app, alice.id, TaskStatus.FAILED)
    result = runner.invoke(args=["tasks", "retry", failed])
    assert result.exit_code == 0, result.output
    new_id = re.search(r"Launched task (\w+)", result.output).group(1)
    new = get_task(app, new_id)
    assert new_id != failed and new.user_id == alice.id and new.status == TaskStatus.QUEUED
    refused = runner.invoke(args=["tasks", "retry", failed])
    assert refused.exit_code != 0 and "already has" in refused.output


def test_retention_with_a_moved_clock(app, client, auth, make_user, runner):
    """Before expiry: downloadable, expires_at set; after: 410, pruned file gone, history says expired."""
    alice = make_user("alice")
    task_id, path = finished_export(app, alice.id)
    auth.login("alice")
    body = client.get(f"/api/tasks/{task_id}").get_json()
    task = get_task(app, task_id)
    assert body["expires_at"] == (task.finished_at + timedelta(days=7)).isoformat(timespec="microseconds") + "Z"
    assert body["download_url"] == f"/tasks/{task_id}/download"
    with app.app_context():
        from app.sockets import snapshot

        assert [p["expires_at"] for p in snapshot(alice.id)] == [body["expires_at"]]
    assert client.get(f"/tasks/{task_id}/download").status_code == 200
    # Six days on, nothing changes; eight days on, the link is gone even before retention ran.
    app.config["NOW"] = lambda: utcnow() + timedelta(days=6)
    assert runner.invoke(args=["tasks", "prune"]).output.startswith("Deleted 0 ")
    assert path.exists() and client.get(f"/tasks/{task_id}/download").status_code == 200
    app.config["NOW"] = lambda: utcnow() + timedelta(days=8)
    gone = client.get(f"/tasks/{task_id}/download")
    assert gone.status_code == 410 and "This export has expired" in text_of(gone)
    assert client.get(f"/api/tasks/{task_id}").get_json()["download_url"] is None
    result = runner.invoke(args=["tasks", "prune"])
    assert result.output.startswith("Deleted 1 expired export file"), result.output
    assert not path.exists()
    body = client.get(f"/api/tasks/{task_id}").get_json()
    assert body["download_url"] is None and body["expires_at"] is None
    assert client.get(f"/tasks/{task_id}/download").status_code == 410
    assert f'data-expired="{task_id}"' in client.get("/tasks").get_data(as_text=True)


def test_retention_runs_once_per_interval(app, make_user):
    """The periodic entry point takes a Redis lock: a second process in the same interval does nothing."""
    from app.jobs.retention import LOCK_KEY, retention_once

    alice = make_user("alice")
    _, path = finished_export(app, alice.id, ended_ago=timedelta(days=8))
    with app.app_context():
        connection = app.extensions["redis"]
        connection.delete(LOCK_KEY)
        assert retention_once() == 1 and not path.exists()
        assert retention_once() is None  # another sweeper, same interval
        assert 0 < connection.ttl(LOCK_KEY) <= app.config["RETENTION_INTERVAL"]
        connection.delete(LOCK_KEY)


def test_owner_deletes_an_export_early(app, client, auth, make_user):
    """POST /tasks/<id>/delete: CSRF required, 404 for anyone else, then the file is gone and download is 410."""
    alice, _ = make_user("alice"), make_user("bob")
    task_id, path = finished_export(app, alice.id)
    auth.login("bob")
    assert auth.post(f"/tasks/{task_id}/delete").status_code == 404
    auth.logout()
    auth.login("alice")
    assert client.post(f"/tasks/{task_id}/delete").status_code == 400  # no CSRF token
    assert path.exists()
    response = auth.post(f"/tasks/{task_id}/delete")
    assert response.status_code == 303 and not path.exists()
    assert client.get(f"/tasks/{task_id}/download").status_code == 410
    assert auth.post(f"/tasks/{task_id}/delete").status_code == 404  # nothing left to delete


def test_dashboard_delete_of_a_queued_job_fails_its_task_with_a_reason(app, client, auth, admin, make_user, runner):
    """An admin deletes a job still in the queue: its task ends failed, saying an operator deleted it."""
    from app.jobs import launch_task
    from app.ops.dashboard import DELETED

    alice = make_user("alice")
    with app.app_context():
        from app.extensions import db
        from app.models import User

        task_id = launch_task(db.session.get(User, alice.id), "export_posts").id
    shown = runner.invoke(args=["tasks", "show", task_id]).output
    assert "job         queued on microblog-tasks" in shown and "heartbeat   -" in shown, shown
    auth.login("root")
    response = client.post(f"/admin/rq/job/{task_id}/delete", headers={"Origin": "http://localhost"})
    assert response.status_code == 200 and response.get_json() == {"status": "OK"}
    task = get_task(app, task_id)
    assert task.status == TaskStatus.FAILED and task.message == DELETED
    assert "none in Redis" in runner.invoke(args=["tasks", "show", task_id]).output


def test_log_formats(app):
    """key=value by default (values with spaces quoted), JSON with LOG_FORMAT=json; one line each."""
    import json
    import logging

    from app.logs import JsonFormatter, KeyValueFormatter

    record = logging.LogRecord("microblog.tasks", logging.INFO, __file__, 1, "task %s %s", ("t1", "failed"), None)
    record.fields = {"event": "task", "step": "failed", "task_id": "t1", "user_id": 3, "message": 'Disk "full" now'}
    line = KeyValueFormatter().format(record)
    assert "\n" not in line and ' step=failed task_id=t1 user_id=3 message="Disk \\"full\\" now"' in line
    assert line.startswith("ts=") and 'msg="task t1 failed"' in line
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["step"] == "failed" and parsed["user_id"] == 3 and parsed["level"] == "INFO"


def test_history_is_paginated(app, client, auth, make_user):
    """/tasks shows 50 tasks a page, newest first; the rest are on page 2."""
    from tests.factories import TASK_ROW_RE

    alice = make_user("alice")
    ids = [make_task(app, alice.id, TaskStatus.FAILED, age=timedelta(minutes=60 - i)) for i in range(55)]
    auth.login("alice")
    first = TASK_ROW_RE.findall(client.get("/tasks").get_data(as_text=True))
    second = TASK_ROW_RE.findall(client.get("/tasks?page=2").get_data(as_text=True))
    assert first == ids[::-1][:50] and second == ids[::-1][50:]


def test_database_errors_never_show_parameters(app, make_user):
    """A failed statement's message (what logs and tracebacks print) hides its values, e.g. a post body."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import Post

    alice = make_user("alice")
    with app.app_context():
        with pytest.raises(sa.exc.IntegrityError) as failure:
            db.session.execute(sa.insert(Post), [{"body": "my secret diary", "user_id": alice.id + 999}])
        db.session.rollback()
    assert "my secret diary" not in str(failure.value) and "hidden" in str(failure.value)


def test_tasks_retry_of_an_import_is_refused_with_the_reason(app, runner, make_user):
    """An import's input was an upload that is gone: retry says so and launches nothing (not a job
    that could only fail for want of its file)."""
    alice = make_user("alice")
    failed = make_task(app, alice.id, TaskStatus.FAILED, name="import_posts")
    result = runner.invoke(args=["tasks", "retry", failed])
    assert result.exit_code != 0 and "upload the file again" in result.output, result.output
    with app.app_context():
        from app.extensions import db
        from app.models import Task
        assert db.session.query(Task).filter_by(user_id=alice.id).count() == 1, "nothing was launched"
