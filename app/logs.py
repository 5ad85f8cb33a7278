"""Log lines an operator can grep or ship: key=value by default, JSON with LOG_FORMAT=json.

Each step of a task's life (queued, started, progress_25/50/75, delivering, finished, failed,
canceled, swept) is one line on the `microblog.tasks` logger with task_id, user_id and the seconds
since the task was created. Only ids, names, statuses and our own messages are logged: never a
post body, an email body or a password.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Mapping

from app.models import utcnow

TASK_LOG = logging.getLogger("microblog.tasks")
MILESTONES = (25, 50, 75)
_HANDLER_MARK = "_microblog_handler"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as an ordered mapping: time, level, logger, message, then its structured fields."""
    stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
    out: dict[str, Any] = {"ts": stamp.replace("+00:00", "Z"), "level": record.levelname,
                           "logger": record.name, "msg": record.getMessage()}
    out.update(getattr(record, "fields", {}))
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _quote(value: Any) -> str:
    """A value for key=value: bare when it has no spaces, quotes or '=', else JSON-quoted."""
    text = "" if value is None else str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """`ts=… level=INFO logger=… msg="…" step=started task_id=…`."""

    def format(self, record: logging.LogRecord) -> str:
        """One line per record (a traceback is one quoted value)."""
        return " ".join(f"{key}={_quote(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's fields as JSON."""
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


def configure_logging(config: Mapping[str, Any]) -> None:
    """Root logging: our formatter on stderr at LOG_LEVEL (idempotent: apps are built many times in tests)."""
    root = logging.getLogger()
    fmt = config.get("LOG_FORMAT", "keyvalue")
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root.setLevel(config.get("LOG_LEVEL", "INFO"))


def log_step(step: str, task_id: str, user_id: int, created_at: datetime | None = None,
             level: int = logging.INFO, **fields: Any) -> None:
    """One lifecycle line for a task; never raises (logging must not break a job)."""
    try:
        data: dict[str, Any] = {"event": "task", "step": step, "task_id": task_id, "user_id": user_id}
        if created_at is not None:
            data["duration"] = round((utcnow() - created_at).total_seconds(), 3)
        data.update(fields)
        TASK_LOG.log(level, "task %s %s", task_id, step, extra={"fields": data})
    except Exception:  # pragma: no cover - a broken formatter must not fail the task
        pass


def milestones_crossed(before: int, after: int) -> list[int]:
    """The 25/50/75 marks passed when progress went from `before` to `after`."""
    return [m for m in MILESTONES if before < m <= after]
