"""MySQL/MariaDB specifics (imported by app.extensions, so the app and its migrations both see them)."""
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.ext.compiler import compiles


@compiles(DateTime, "mysql")
def _datetime_with_microseconds(type_: DateTime, compiler: Any, **kw: Any) -> str:
    """DATETIME(6): MySQL's plain DATETIME drops microseconds, which posts.json always carries
    and the export's keyset order (timestamp, id) relies on."""
    return "DATETIME(6)"
