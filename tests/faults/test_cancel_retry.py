"""Cancel and retry, against a real worker: a canceled export really stops, leaves no file, sends no mail."""
from __future__ import annotations

from rq.job import Job, JobStatus

from tests.faults.conftest import finish, running_export
from tests.harness import assert_well_ordered, new_user, wait_until


def test_cancel_running_export_stops_the_work(make_stack):
    """Cancel mid-export: one `canceled` event, the job is stopped, no partial file, no email."""
    stack = make_stack()
    user, watcher, task_id = running_export(stack)
    try:
        assert any(stack.export_dir.rglob(f"{task_id}*.part")), "the held export is mid-file"
        r = user.post(f"/tasks/{task_id}/cancel", allow_redirects=False)
        assert r.status_code == 303
        end = watcher.terminal(task_id)
        assert end["status"] == "canceled"
        connection = stack.redis.client()
        wait_until(lambda: Job.fetch(task_id, connection=connection).get_status() in
                   (JobStatus.STOPPED, JobStatus.FINISHED), 30, "RQ to stop the job")
        user_dir = stack.export_dir
        wait_until(lambda: not any(user_dir.rglob(f"{task_id}*")), 15, "the partial file to be removed")
        assert_well_ordered(watcher.of(task_id))
        # Canceling again, now that it has ended, is a conflict.
        assert user.post(f"/tasks/{task_id}/cancel", allow_redirects=False).status_code == 409
        assert user.get(f"/api/tasks/{task_id}").json()["status"] == "canceled"
        assert stack.smtp.to(user.email) == []
        # "Try again" is a new export with a new id, allowed at once.
        retry = user.export()
        assert retry != task_id
        assert finish(stack, watcher, retry, timeout=120)["status"] == "finished"
        assert [e["status"] for e in watcher.of(task_id)].count("canceled") == 1
    finally:
        watcher.close()


def test_cancel_queued_export_removes_it_from_the_queue(make_stack):
    """With no worker running, a queued export is canceled and its job leaves the queue."""
    stack = make_stack(workers=0)
    user = new_user(stack, posts=10)
    watcher = user.socket()
    try:
        task_id = user.export()
        connection = stack.redis.client()
        assert task_id in stack_queue_ids(connection)
        assert user.post(f"/tasks/{task_id}/cancel", allow_redirects=False).status_code == 303
        assert watcher.terminal(task_id)["status"] == "canceled"
        assert task_id not in stack_queue_ids(connection)
        # A worker arriving later does not run it.
        stack.start_worker()
        retry = user.export()
        assert finish(stack, watcher, retry)["status"] == "finished"
        assert user.get(f"/api/tasks/{task_id}").json()["status"] == "canceled"
        assert len(stack.smtp.to(user.email)) == 1
    finally:
        watcher.close()


def test_cancel_page_shows_buttons(make_stack):
    """Live bars carry a Cancel button; ended failed/canceled exports offer "Try again" on /tasks."""
    stack = make_stack(workers=0)
    user = new_user(stack)
    task_id = user.export()
    page = user.get("/tasks").text
    assert f'action="/tasks/{task_id}/cancel"' in page
    user.post(f"/tasks/{task_id}/cancel")
    page = user.get("/tasks").text
    assert "Try again" in page and f'action="/tasks/{task_id}/cancel"' not in page


def stack_queue_ids(connection) -> list[str]:
    """Job ids waiting in the task queue."""
    from rq import Queue

    return Queue("microblog-tasks", connection=connection).job_ids
