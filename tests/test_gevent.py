"""SOCKETIO_ASYNC_MODE=gevent, the supported way out of eventlet: every pipeline test again, against a
gevent web server on PostgreSQL (psycopg2 greened by psycogreen). The browser test: test_browser_gevent.py."""
from __future__ import annotations

import pytest

from tests.test_pipeline import *  # noqa: F401,F403  (every pipeline test, re-run here)

pytestmark = pytest.mark.parametrize("stack", ["postgresql:gevent"], indirect=True)


def test_server_runs_on_gevent(stack):
    """The web server of this module really is the gevent one (its start-up line says so)."""
    (web,) = stack.webs
    assert "(gevent)" in web.tail(200), web.tail()
