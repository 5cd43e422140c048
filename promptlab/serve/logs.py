"""Structured logs: one JSON object a line, API keys never written."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger("promptlab.serve")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
#: Strings never written to a log line (the API keys); :func:`redact` adds to it.
_SECRETS: set[str] = set()


def redact(*secrets: str) -> None:
    """Never write these strings: a line holding one gets ``***`` in its place."""
    _SECRETS.update(s for s in secrets if s)


class JSONFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...extra fields, "exc"}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        line = json.dumps(data, default=str)
        for secret in _SECRETS:
            if secret in line:
                line = line.replace(secret, "***")
        return line


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for promptlab's and uvicorn's loggers (access log off)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = {
        name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
        for name in ("promptlab.serve", "uvicorn", "uvicorn.error")
    }
    loggers["uvicorn.access"] = {"handlers": [], "level": "WARNING", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {"json": handler},
        "loggers": loggers,
    }
