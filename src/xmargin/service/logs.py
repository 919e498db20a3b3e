"""Structured logs: one JSON object per line (``xmargin serve --log-format json``).

Every record carries ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and ``pid``
(the worker process), plus the fields passed as ``extra={"fields": {...}}``.  The uvicorn
access log becomes ``{"event": "request", "client", "method", "path", "status"}``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": os.getpid(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            out |= {"event": "request", "client": client, "method": method, "path": path, "status": status}
        else:
            out["message"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out |= fields
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level: str = "info") -> None:
    """Send xmargin's (at info) and uvicorn's (at ``level``) logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.captureWarnings(True)  # Python warnings become log records too
    for name in ("xmargin", "uvicorn", "uvicorn.error", "uvicorn.access", "py.warnings"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.propagate = False
        lg.setLevel("INFO" if name in ("xmargin", "py.warnings") else level.upper())


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dictionary for uvicorn with the JSON formatter."""
    fmt = {"()": "xmargin.service.logs.JsonFormatter"}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = {n: {"handlers": ["json"], "level": "INFO" if n in ("xmargin", "py.warnings") else level.upper(),
                   "propagate": False}
               for n in ("xmargin", "uvicorn", "uvicorn.error", "uvicorn.access", "py.warnings")}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"json": fmt},
            "handlers": {"json": handler}, "loggers": loggers}
