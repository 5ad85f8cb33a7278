"""EXPORT_DIR is shared storage that each machine may mount at a different path: the row keeps the
file's path relative to it, and each web process finds the file under its own mount point."""
from __future__ import annotations

import json

from tests.harness import new_user


def test_download_through_another_mount_point(make_stack, tmp_path):
    """The worker writes through /…/mnt-worker, the web serves from /…/mnt-web: same storage, other paths."""
    store = tmp_path / "store"
    store.mkdir()
    mnt_worker, mnt_web = tmp_path / "mnt-worker", tmp_path / "mnt-web"
    mnt_worker.symlink_to(store, target_is_directory=True)
    mnt_web.symlink_to(store, target_is_directory=True)
    stack = make_stack(web=False, workers=0, held=False)
    stack.start_web(EXPORT_DIR=str(mnt_web))
    stack.start_worker(EXPORT_DIR=str(mnt_worker))
    user = new_user(stack, posts=40)
    watcher = user.socket()
    try:
        task_id = user.export()
        end = watcher.terminal(task_id)
        assert end["status"] == "finished", end
    finally:
        watcher.close()
    mnt_worker.unlink()  # the web's machine has no such path
    download = user.get(end["download_url"])
    assert download.status_code == 200, download.status_code
    assert len(json.loads(download.content)["posts"]) == 40
