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
