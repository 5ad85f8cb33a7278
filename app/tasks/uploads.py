"""The import's upload: `POST /import_posts` stores the file under EXPORT_DIR and launches the job.

The body is capped before anything reads it, and the file is streamed to disk in chunks: a 20 MB
upload never sits in the web process's memory, and the hub gets a turn between chunks.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from flask import abort, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from app.extensions import socketio
from app.jobs import JOBS, active_in_lane, lane_of
from app.jobs.imports import UPLOAD_MAX_BYTES, remove_upload, upload_path
from app.limits import imports_per_user
from app.tasks import bp
from app.tasks.launch import launch_and_flash
from app.tasks.routes import _back

KIND = "import_posts"
# The multipart envelope (boundary, part headers, the CSRF field) around a file of the maximum size.
REQUEST_MAX_BYTES = UPLOAD_MAX_BYTES + 64 * 1024
CHUNK = 256 * 1024
# Lazy: said in the language of the request they answer.
TOO_LARGE = _l("The file is larger than %(size)s MB, so nothing was imported.", size=UPLOAD_MAX_BYTES // (1024 * 1024))
NO_FILE = _l("Choose a posts.json file to import.")
EMPTY = _l("The file is empty, so nothing was imported.")


class UploadTooLarge(Exception):
    """The file passed UPLOAD_MAX_BYTES while it was being saved."""


@bp.url_value_preprocessor
def cap_import_upload(endpoint: str | None, values: dict | None) -> None:
    """Limit the import's body before any before_request (CSRF, the NUL check) parses the form."""
    if endpoint != f"{bp.name}.import_posts" or request.method != "POST":
        return
    request.max_content_length = REQUEST_MAX_BYTES  # also caps a chunked body with no Content-Length
    if (request.content_length or 0) > REQUEST_MAX_BYTES:
        abort(413, description=str(TOO_LARGE))  # refused from the header alone: the body is never read


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> tuple[str, int]:
    """413 with the import's own words (werkzeug's stream cap raises a generic one)."""
    message = TOO_LARGE if request.endpoint == f"{bp.name}.import_posts" else error.description
    return render_template("errors/error.html", code=413, message=message), 413


def import_page(error: str | None = None, status: int = 200) -> tuple[str, int]:
    """The import form on a page of its own (where "Try again" leads), with an error if any."""
    busy = active_in_lane(current_user.id, lane_of(KIND))
    return render_template("main/import.html", title=_("Import posts"), name=KIND, kind=JOBS[KIND], busy=busy,
                           error=error), status


@bp.route("/import_posts", methods=["GET", "POST"])
@login_required
@imports_per_user
def import_posts() -> Response | tuple[str, int]:
    """GET: the import form. POST (multipart `file`): store the upload and launch the import."""
    if request.method == "GET":
        return import_page()
    upload = request.files.get("file")
    if upload is None or (not upload.filename and not request.content_length):
        return import_page(NO_FILE, 400)
    task_id = uuid.uuid4().hex
    try:
        size = save_upload(upload, upload_path(task_id))
    except UploadTooLarge:
        return import_page(TOO_LARGE, 413)
    if size == 0:
        remove_upload(task_id)
        return import_page(EMPTY, 400)
    if launch_and_flash(KIND, task_id) is None:
        remove_upload(task_id)  # refused: no task will ever read it
    return _back(url_for("main.user", username=current_user.username))


def save_upload(upload: FileStorage, path: Path) -> int:
    """Copy the upload to path in chunks (whole files only appear under the final name); its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    size = 0
    try:
        with open(partial, "wb") as out:
            while chunk := upload.stream.read(CHUNK):
                size += len(chunk)
                if size > UPLOAD_MAX_BYTES:
                    raise UploadTooLarge()
                out.write(chunk)
                socketio.sleep(0)  # other sockets' turn: disk writes do not yield by themselves
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size
