"""The import of posts: the upload route, every bad input, re-imports, and export/import exclusion.

Real parts: the test database (SQLite and PostgreSQL), the session's private Redis as the queue.
No worker runs here: a test launches through the route, then runs the job function in-process as
a work horse would (tests/test_import_pipeline.py runs it in the real worker).
"""
from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Post, Task, TaskStatus
from tests.factories import count, get_task, make_task, post_rows, set_status, shown, text_of

MB = 1024 * 1024
# Route checks that never reach the database's differences run once; the job's tests run on both.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GOOD = {"body": "hello", "timestamp": "2026-01-31T12:00:00.000001Z"}


@pytest.fixture
def alice(make_user, auth):
    """Alice, logged in."""
    user = make_user("alice")
    auth.login("alice")
    return user


def posts_file(*posts: object, extra: dict | None = None) -> bytes:
    """A posts.json with the given entries (anything JSON can hold)."""
    return json.dumps({"posts": list(posts), **(extra or {})}).encode()


def upload(auth, content: bytes, filename: str = "posts.json"):
    """POST the profile's import form with a file."""
    return auth.post("/import_posts", {"file": (io.BytesIO(content), filename)},
                     content_type="multipart/form-data")


def only_task(app) -> Task:
    """The single Task row."""
    with app.app_context():
        task = db.session.scalars(sa.select(Task)).one()
        db.session.expunge(task)
        return task


def uploads(app) -> list[str]:
    """Files waiting in EXPORT_DIR/uploads."""
    folder = Path(app.config["EXPORT_DIR"]) / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def run_import(app, auth, content: bytes) -> Task:
    """Upload content, run its job as a work horse would, return the ended task."""
    response = upload(auth, content)
    assert response.status_code == 303, text_of(response)
    with app.app_context():
        task_id = db.session.scalars(sa.select(Task.id).order_by(Task.created_at.desc())).first()
    from app.jobs.imports import import_posts

    with app.app_context():
        import_posts(task_id)
    assert uploads(app) == []  # the upload is gone whatever the ending
    return get_task(app, task_id)


# --- the form and the route ----------------------------------------------------------------------

@SQLITE_ONLY
def test_import_form_only_for_owner(client, alice, make_user):
    """Alice's profile has the multipart "Import posts" form with a CSRF field; Bob's does not."""
    make_user("bob")
    page = client.get("/user/alice").get_data(as_text=True)
    assert shown(page, "import-form") and shown(page, "export-form") and not shown(page, "posts-in-progress")
    start = page.index('<form action="/import_posts" method="post" enctype="multipart/form-data"')
    form = page[start:page.index("</form>", start)]
    assert 'name="csrf_token"' in form and 'type="file"' in form and 'name="file"' in form
    assert ">Import posts</button>" in form
    assert "/import_posts" not in client.get("/user/bob").get_data(as_text=True)


@SQLITE_ONLY
def test_import_page_offers_the_form(client, alice):
    """GET /import_posts (where "Try again" of an import leads) shows the same form."""
    page = client.get("/import_posts").get_data(as_text=True)
    assert shown(page, "import-form") and 'name="file"' in page


def test_upload_launches_an_import(app, client, auth, alice):
    """A good file: 303 to the profile, one queued import task, the file under EXPORT_DIR."""
    response = upload(auth, posts_file(GOOD))
    assert response.status_code == 303
    assert response.headers["Location"] == "/user/alice"
    task = only_task(app)
    assert (task.name, task.lane, task.status, task.description) == ("import_posts", "posts", TaskStatus.QUEUED,
                                                                     "Importing posts")
    stored = Path(app.config["EXPORT_DIR"]) / "uploads" / f"{task.id}.json"
    assert stored.read_bytes() == posts_file(GOOD)
    page = text_of(client.get("/user/alice"))
    assert "Your import has started" in page
    # While it is queued neither form is offered; one note says what is in the way.
    raw = client.get("/user/alice").get_data(as_text=True)
    assert not shown(raw, "import-form") and not shown(raw, "export-form") and shown(raw, "posts-in-progress")
    assert "“Importing posts” is in progress" in re.sub(r"<[^>]+>", "", text_of(client.get("/user/alice")))


@SQLITE_ONLY
def test_import_needs_login_and_csrf(app, client, auth, make_user):
    """Anonymous: to the login page. Without the CSRF field: 400. Neither makes a task or a file."""
    make_user("alice")
    response = upload(auth, posts_file(GOOD))  # a valid CSRF token, no login
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    auth.login("alice")
    response = client.post("/import_posts", data={"file": (io.BytesIO(posts_file(GOOD)), "posts.json")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert count(app, Task) == 0 and uploads(app) == []


@SQLITE_ONLY
def test_no_file_is_400(app, auth, alice):
    """The form sent without a file: 400 with a message, no task."""
    response = auth.post("/import_posts", {}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a posts.json file to import." in text_of(response)
    assert count(app, Task) == 0


@SQLITE_ONLY
def test_empty_upload_is_400(app, auth, alice):
    """An empty file: 400 with a message, no task, nothing left on disk."""
    response = upload(auth, b"")
    assert response.status_code == 400
    assert "The file is empty, so nothing was imported." in text_of(response)
    assert count(app, Task) == 0 and uploads(app) == []


@SQLITE_ONLY
def test_over_20_mb_is_413_from_the_header(app, auth, alice):
    """A body well over 20 MB is refused from its Content-Length, before it is read: 413, no task."""
    response = upload(auth, b" " * (21 * MB))
    assert response.status_code == 413
    assert "larger than 20 MB" in text_of(response)
    assert count(app, Task) == 0 and uploads(app) == []


@SQLITE_ONLY
def test_just_over_20_mb_is_413_while_saving(app, auth, alice):
    """20 MB and one byte (the envelope still fits the header check): the copy stops there, 413, no task."""
    response = upload(auth, b" " * (20 * MB + 1))
    assert response.status_code == 413
    assert "larger than 20 MB" in text_of(response)
    assert count(app, Task) == 0 and uploads(app) == []


@SQLITE_ONLY
def test_exactly_20_mb_is_accepted(app, auth, alice):
    """A file of exactly 20 MB is within the limit."""
    content = posts_file(GOOD)
    content = content[:-1] + b" " * (20 * MB - len(content)) + b"}"
    assert len(content) == 20 * MB
    assert upload(auth, content).status_code == 303
    assert only_task(app).status == TaskStatus.QUEUED


# --- one at a time: the export and the import share a lane ---------------------------------------

@pytest.mark.parametrize("active", [TaskStatus.QUEUED, TaskStatus.STARTED])
def test_import_refused_while_export_active(app, client, auth, alice, active):
    """While an export is queued or running, an import is refused with a clear message; no file is kept."""
    make_task(app, alice.id, active, name="export_posts")
    response = upload(auth, posts_file(GOOD))
    assert response.status_code == 303
    page = text_of(client.get("/user/alice"))
    assert "“Exporting posts” is in progress; you can import posts once it has ended." in page
    assert count(app, Task, name="import_posts") == 0 and uploads(app) == []


def test_export_refused_while_import_active(app, client, auth, alice):
    """While an import is queued, the export is refused, naming the import."""
    assert upload(auth, posts_file(GOOD)).status_code == 303
    response = auth.post("/export_posts", follow_redirects=True)
    assert "“Importing posts” is in progress; you can export your posts once it has ended." in text_of(response)
    assert count(app, Task, name="export_posts") == 0


def test_second_import_refused(app, client, auth, alice):
    """Two imports at once are refused like two exports; the second upload is not kept."""
    assert upload(auth, posts_file(GOOD)).status_code == 303
    first = only_task(app)
    response = upload(auth, posts_file(GOOD))
    assert response.status_code == 303
    assert "An import of your posts is already in progress." in text_of(client.get("/user/alice"))
    assert count(app, Task) == 1 and uploads(app) == [f"{first.id}.json"]


def test_lanes_are_per_user(app, auth, alice, make_user):
    """Bob's running export does not stop Alice's import."""
    bob = make_user("bob")
    make_task(app, bob.id, TaskStatus.STARTED, name="export_posts")
    assert upload(auth, posts_file(GOOD)).status_code == 303
    assert count(app, Task, name="import_posts") == 1


def test_database_refuses_two_active_tasks_in_a_lane(app, alice):
    """The partial unique index itself (not only the route) keeps an export and an import apart."""
    make_task(app, alice.id, TaskStatus.STARTED, name="export_posts")
    with pytest.raises(sa.exc.IntegrityError):
        make_task(app, alice.id, TaskStatus.QUEUED, name="import_posts")
    make_task(app, alice.id, TaskStatus.FINISHED, name="import_posts")  # ended ones do not count


# --- the job: good files -------------------------------------------------------------------------

def test_import_adds_posts_in_order(app, auth, alice):
    """Every post, body and timestamp to the microsecond, in file order; the task says how many."""
    posts = [{"body": f"post {i} é 🙂 \"quoted\"", "timestamp": f"2026-01-01T00:00:{i:02d}.{i:06d}Z"}
             for i in range(12)]
    posts.append(dict(posts[-1]))  # the same post twice in one file: both kept, as the export wrote them
    task = run_import(app, auth, posts_file(*posts))
    assert (task.status, task.progress, task.message) == (TaskStatus.FINISHED, 100, "13 posts imported.")
    assert post_rows(app, alice.id) == [(p["body"], datetime.fromisoformat(p["timestamp"][:-1])) for p in posts]


def test_140_code_points_and_emoji(app, auth, alice):
    """140 characters are counted as code points: 140 emoji (560 bytes of UTF-8) are one valid body."""
    task = run_import(app, auth, posts_file({"body": "🙂" * 140, "timestamp": GOOD["timestamp"]}))
    assert task.status == TaskStatus.FINISHED
    assert post_rows(app, alice.id)[0][0] == "🙂" * 140


def test_bom_is_accepted(app, auth, alice):
    """A UTF-8 byte order mark (some editors write one) is skipped."""
    task = run_import(app, auth, b"\xef\xbb\xbf" + posts_file(GOOD))
    assert (task.status, task.message) == (TaskStatus.FINISHED, "1 post imported.")


def test_other_iso_forms_are_converted_to_utc(app, auth, alice):
    """Besides the export's format, ISO 8601 date-times with a zone are accepted and stored in UTC."""
    task = run_import(app, auth, posts_file({"body": "a", "timestamp": "2026-01-01T01:30:00+01:00"},
                                            {"body": "b", "timestamp": "2026-01-01T00:30:00.5Z"}))
    assert task.status == TaskStatus.FINISHED
    assert post_rows(app, alice.id) == [("a", datetime(2026, 1, 1, 0, 30)),
                                        ("b", datetime(2026, 1, 1, 0, 30, 0, 500000))]


def test_unknown_keys_are_ignored(app, auth, alice):
    """Other keys (top level or in a post, nested or not) are not ours and are skipped."""
    content = posts_file({"id": 7, "tags": [{"x": [1, {}]}], **GOOD}, extra={"version": {"a": [1, 2]}})
    assert run_import(app, auth, content).status == TaskStatus.FINISHED
    assert len(post_rows(app, alice.id)) == 1


def test_reimport_skips_present_posts(app, auth, alice):
    """The same file twice: the second import adds nothing and says how many it skipped."""
    posts = [{"body": f"p{i}", "timestamp": f"2026-02-01T00:00:00.{i:06d}Z"} for i in range(2500)]
    assert run_import(app, auth, posts_file(*posts)).message == "2,500 posts imported."
    again = run_import(app, auth, posts_file(*posts))
    assert (again.status, again.message) == (TaskStatus.FINISHED,
                                             "0 posts imported. 2,500 posts skipped as already present.")
    assert count(app, Post) == 2500


def test_partly_present(app, auth, alice):
    """Only posts with the same body AND timestamp are skipped."""
    run_import(app, auth, posts_file(GOOD))
    task = run_import(app, auth, posts_file(GOOD, {**GOOD, "body": "other"},
                                            {**GOOD, "timestamp": "2026-01-31T12:00:00.000002Z"}))
    assert task.message == "2 posts imported. 1 post skipped as already present."
    assert count(app, Post) == 3


# --- the job: bad files (each fails, names the first bad entry, and changes nothing) -------------

BAD_FILES = {
    "not JSON": (b"hello, world", "The file is not valid JSON"),
    "truncated": (b'{"posts": [{"body": "a", "timestamp": "2026-01-31T12:00:00.000001Z"}, {"body": "b',
                  "The file is not valid JSON at entry posts[1]"),
    "trailing garbage": (posts_file(GOOD) + b" {}", "The file is not valid JSON"),
    "top level is a list": (json.dumps([GOOD]).encode(), 'a JSON object with a "posts" list'),
    "posts is an object": (b'{"posts": {"body": "a"}}', 'a JSON object with a "posts" list'),
    "no posts key": (b'{"items": []}', 'The file has no "posts" list.'),
    "two posts keys": (b'{"posts": [], "posts": []}', 'The file has two "posts" lists.'),
    "post not an object": (posts_file(GOOD, "just text"), "Entry posts[1] is not an object"),
    "post is a list": (posts_file(GOOD, GOOD, [GOOD]), "Entry posts[2] is not an object"),
    "missing body": (posts_file(GOOD, {"timestamp": GOOD["timestamp"]}), "Entry posts[1] has no body."),
    "body a number": (posts_file({**GOOD, "body": 5}), "Entry posts[0]: the body is not a string."),
    "body an object": (posts_file({**GOOD, "body": {"text": "a"}}), "Entry posts[0]: the body is not a string."),
    "body null": (posts_file({**GOOD, "body": None}), "Entry posts[0]: the body is not a string."),
    "empty body": (posts_file(GOOD, {**GOOD, "body": ""}), "Entry posts[1]: the body is empty."),
    "141 characters": (posts_file(GOOD, {**GOOD, "body": "é" * 141}),
                       "Entry posts[1]: the body has 141 characters; at most 140 are allowed."),
    "NUL in body": (posts_file({**GOOD, "body": "a\u0000b"}), "Entry posts[0]: the body contains a NUL character."),
    "missing timestamp": (posts_file(GOOD, {"body": "x"}), "Entry posts[1] has no timestamp."),
    "timestamp a number": (posts_file({**GOOD, "timestamp": 1767268800}),
                           "Entry posts[0]: the timestamp is not a string."),
    "timestamp words": (posts_file({**GOOD, "timestamp": "yesterday"}), "Entry posts[0]: the timestamp 'yesterday'"),
    "month 13": (posts_file({**GOOD, "timestamp": "2026-13-01T00:00:00.000000Z"}), "Entry posts[0]: the timestamp"),
    "no time zone": (posts_file({**GOOD, "timestamp": "2026-01-31T12:00:00.000001"}), "Entry posts[0]: the timestamp"),
    "date only": (posts_file({**GOOD, "timestamp": "2026-01-31"}), "Entry posts[0]: the timestamp"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "The file is binary"),
    "UTF-16": ('{"posts": []}'.encode("utf-16"), "The file is binary"),
    "bad UTF-8": (b'{"posts": [{"body": "\xff\xfe", "timestamp": "2026-01-31T12:00:00.000001Z"}]}',
                  "The file is not valid JSON at entry posts[0]"),
}


def test_bad_files_fail_and_change_nothing(app, auth, alice, subtests):
    """Each bad file ends its task failed with a message naming the problem (and the entry), adding nothing."""
    run_import(app, auth, posts_file({"body": "already here", "timestamp": GOOD["timestamp"]}))
    before = post_rows(app, alice.id)
    for case, (content, expected) in BAD_FILES.items():
        with subtests.test(case=case):
            task = run_import(app, auth, content)
            assert task.status == TaskStatus.FAILED
            assert expected in task.message and task.message.endswith("Nothing was imported."), task.message
            assert post_rows(app, alice.id) == before


def test_first_bad_entry_is_named(app, auth, alice):
    """With many bad entries the message names the first one, after thousands of good ones."""
    posts = [GOOD] * 5000 + [{**GOOD, "body": ""}] + [{**GOOD, "body": "x" * 200}] * 3
    task = run_import(app, auth, posts_file(*posts))
    assert task.message.startswith("Entry posts[5000]: the body is empty."), task.message
    assert count(app, Post) == 0


# --- ending: cancel, clean-up ---------------------------------------------------------------------

def test_cancel_midway_rolls_back(app, auth, alice):
    """A cancel that wins before the import commits leaves no post: completion is the transaction's last step."""
    from app.jobs.imports import insert_file, upload_path
    from app.progress import TaskCanceled

    assert upload(auth, posts_file(*[GOOD] * 5000)).status_code == 303
    task_id = only_task(app).id
    set_status(app, task_id, TaskStatus.STARTED)

    def cancel() -> None:
        with db.engine.connect() as other:  # the web's cancel: another connection, committed at once
            other.execute(sa.update(Task).values(status=TaskStatus.CANCELED))
            other.commit()

    inserts: list[int] = []

    def cancel_after_first_batch(conn, clause, *args) -> None:
        # Right after the job's first "still running?" check: the first batch goes in, then the cancel is seen.
        if "SELECT task.status" in str(clause) and not inserts:
            inserts.append(1)
            cancel()

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            cancel()  # one writer at a time: a web cancel waits for the lock, so it can only land first
        else:
            sa.event.listen(db.engine, "after_execute", cancel_after_first_batch)
        try:
            with pytest.raises(TaskCanceled):
                insert_file(db.session.get(Task, task_id), upload_path(task_id), 5000)
        finally:
            if sa.event.contains(db.engine, "after_execute", cancel_after_first_batch):
                sa.event.remove(db.engine, "after_execute", cancel_after_first_batch)
    assert count(app, Post) == 0
    assert get_task(app, task_id).status == TaskStatus.CANCELED


def test_failed_hooks_remove_the_upload(app, auth, alice):
    """A killed or stopped import (the RQ hooks' clean-up) leaves no upload behind."""
    from app.jobs.callbacks import remove_partial_export

    assert upload(auth, posts_file(GOOD)).status_code == 303
    task = only_task(app)
    assert uploads(app) == [f"{task.id}.json"]
    with app.app_context():
        remove_partial_export(task.id)
    assert uploads(app) == []


def test_sweep_removes_orphan_uploads(app, auth, alice):
    """An import canceled while queued (its job never runs) loses its upload at the next sweep."""
    from app.jobs.sweep import sweep_abandoned_tasks

    assert upload(auth, posts_file(GOOD)).status_code == 303
    task = only_task(app)
    app.config["SWEEP_ENQUEUE_GRACE"] = 0
    with app.app_context():
        sweep_abandoned_tasks()  # still queued: its upload stays
        assert uploads(app) == [f"{task.id}.json"]
        db.session.execute(sa.update(Task).values(status=TaskStatus.CANCELED))
        db.session.commit()
        sweep_abandoned_tasks()
    assert uploads(app) == []


@SQLITE_ONLY
def test_payload_describes_the_kind(app, alice):
    """Events carry what the browser needs about a kind instead of it comparing names."""
    from app.progress import task_payload

    with app.app_context():
        export = task_payload(db.session.get(Task, make_task(app, alice.id, name="export_posts")))
        set_status(app, export["task_id"], TaskStatus.FINISHED)
        imp = task_payload(db.session.get(Task, make_task(app, alice.id, name="import_posts")))
    assert (export["lane"], export["retry_url"], export["retry_method"], export["noun"]) == (
        "posts", "/export_posts", "post", "posts")
    assert (imp["lane"], imp["retry_url"], imp["retry_method"]) == ("posts", "/import_posts", "get")



# --- a third kind: a registry entry and a job function, nothing else -----------------------------

def archive_posts(task_id: str) -> None:
    """A job function of a kind that only this test knows."""


@pytest.fixture
def third_kind(monkeypatch):
    """JOBS gains an entry before the app is built (as a new line in app/jobs/__init__.py would)."""
    from app.jobs import JOBS, JobSpec

    monkeypatch.setitem(JOBS, "archive_posts", JobSpec(
        archive_posts, "Archiving posts", done="posts archived", noun="posts", label="Archive your posts",
        path="/archive_posts", what="archive"))


@SQLITE_ONLY
def test_third_kind_needs_only_a_registry_entry(third_kind, app, client, auth, alice):
    """Its button is on the profile, its route launches its function, its lane is its own."""
    page = client.get("/user/alice").get_data(as_text=True)
    assert shown(page, "archive-form") and ">Archive your posts</button>" in page
    assert upload(auth, posts_file(GOOD)).status_code == 303  # an import is queued: the posts lane is busy
    response = auth.post("/archive_posts")
    assert response.status_code == 303 and response.headers["Location"] == "/user/alice"
    with app.app_context():
        task = db.session.scalars(sa.select(Task).where(Task.name == "archive_posts")).one()
        assert (task.lane, task.description, task.status) == ("archive_posts", "Archiving posts", TaskStatus.QUEUED)
        from app.jobs import task_queue

        job = task_queue().fetch_job(task.id)
    assert job.func_name == "tests.test_import.archive_posts"
    assert "“Archiving posts” is already in progress." in text_of(auth.post("/archive_posts", follow_redirects=True))
