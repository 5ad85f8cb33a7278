"""The live progress bar in Chromium, with the web server on gevent (SOCKETIO_ASYNC_MODE=gevent)."""
from __future__ import annotations

import pytest

from tests.test_browser import context, test_watch_export_progress_live  # noqa: F401  (re-run here)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["sqlite:gevent"], indirect=True)]
STACK_ENV = {"TESTING_JOBS": "1"}  # the re-run test steps a held export, as in test_browser.py


def test_browser_server_runs_on_gevent(stack):
    """This module's web server is the gevent one (its start-up line says so)."""
    (web,) = stack.webs
    assert "(gevent)" in web.tail(200), web.tail()
