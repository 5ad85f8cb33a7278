"""What every work horse would otherwise build for itself, built once in the worker before it forks.

A work horse is a fork of the worker: it starts with whatever the worker holds, and what it builds
it builds anew and drops when its job ends. py-spy of 150 exports of 100 posts (one worker): a
horse spent 18 % of its CPU compiling the email's Jinja templates, every job. Compiled here, they
cost no memory worth measuring (70.2 MiB resident either way) and every horse shares them.

Not warmed, though it was another 18.5 %: Babel's locale data, which `thousands` loaded. It is
4.7 MiB resident for English alone, and held by the worker it would add to every horse's RSS
from the first instant, under the export's own peak (the 1M-post horse: 76.4 -> 81.2 MiB, over
issue 10's 80). The email's count no longer needs it: `app.i18n.format_count` writes the
separators of the languages we serve itself.

This module runs in the worker: no eventlet here.
"""
from __future__ import annotations

from flask import Flask

EMAIL_TEMPLATES = "email/"


def warm(app: Flask) -> None:
    """Compile the email templates into the app's Jinja cache (which every forked horse inherits)."""
    env = app.jinja_env
    # Jinja keeps compiled templates in env.cache (400 by default; these are a handful).
    for name in env.list_templates(filter_func=lambda name: name.startswith(EMAIL_TEMPLATES)):
        env.get_template(name)
