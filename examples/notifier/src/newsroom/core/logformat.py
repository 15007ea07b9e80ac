"""How the app writes its log lines (Python's ``logging``; the message log is log.py).

``serve`` writes readable text by default. ``serve --log-format json`` writes one
JSON object per line, for a log collector: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, and, for lines written while a request is handled, its
``request_id``. Access lines (logger ``APP.access``, one per request) add
``method``, ``path``, ``route``, ``status`` and ``duration_ms``; a logged
exception adds ``exception`` (the traceback, as one string).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from .observe import request_id
from .pages import APP_NAME

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = f"{APP_NAME}.access"
# Libraries whose INFO lines carry what must not be logged: httpx writes every request's URL,
# SUMMARY_API_URL's userinfo and ``?key=`` included. Their warnings and errors still show.
QUIET_LOGGERS = ("httpx", "httpcore")
# Attributes an access line (core/observe.py) carries beyond the message.
REQUEST_FIELDS = ("method", "path", "route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        id = request_id.get()
        if id is not None:
            entry["request_id"] = id
        for field in REQUEST_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = round(value, 3) if field == "duration_ms" else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(format: str = "text", *, level: int = logging.INFO) -> None:
    """Send every log line to stderr in ``format`` (``text`` or ``json``), replacing earlier handlers."""
    if format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {format!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def uvicorn_logging(format: str) -> dict[str, Any]:
    """uvicorn's logging options for ``format``.

    Text keeps uvicorn's own setup and access lines. JSON leaves uvicorn's loggers to
    the root handler set by :func:`configure_logging` and turns uvicorn's access lines
    off: the app writes its own (:data:`ACCESS_LOGGER`), with the route and the duration.
    """
    if format == "json":
        return {"log_config": None, "access_log": False}
    return {"log_level": "info"}


def access_logger(format: str) -> logging.Logger | None:
    """The logger for the app's own access lines, or None when uvicorn writes them (text)."""
    return logging.getLogger(ACCESS_LOGGER) if format == "json" else None
