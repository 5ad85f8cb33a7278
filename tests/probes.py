"""Jobs a test enqueues straight into a real worker, to look inside the work horse that runs them."""
from __future__ import annotations

import sys


def loaded_modules() -> list[str]:
    """Every module this work horse holds: what its worker had imported when it forked, plus this one."""
    return sorted(name for name, module in sys.modules.items() if module is not None)  # None: left out
