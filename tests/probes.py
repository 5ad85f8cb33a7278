"""Jobs a test enqueues straight into a real worker, to look inside the work horse that runs them."""
from __future__ import annotations

import sys


def loaded_modules() -> list[str]:
    """Every module this work horse holds: what its worker had imported when it forked, plus this one."""
    return sorted(name for name, module in sys.modules.items() if module is not None)  # None: left out


def compiled_templates() -> list[str]:
    """The templates this work horse found compiled by its worker."""
    from flask import current_app

    return sorted(key[1] for key in current_app.jinja_env.cache.keys())  # keys: (loader ref, name)


def statements_compiled_for_a_task() -> list[str]:
    """The SQL this work horse had to compile to read a task's language and its row: none if its worker warmed them."""
    from app.extensions import db
    from app.i18n import task_language
    from app.models import Task
    from tests.sql_watch import compiled_anew, statements_run

    with statements_run(db.engine, compiled_anew) as compiled:
        task_language("no-such-task")
        db.session.get(Task, "no-such-task")
        db.session.commit()
    return compiled


def look_up_host_name() -> int:
    """What smtplib.SMTP() does first for every email (socket.getfqdn(), its EHLO name); this horse's pid."""
    import os
    import socket

    socket.getfqdn()
    return os.getpid()
