"""JSON logs, each line carrying the id of the request it belongs to."""

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`. uvicorn adds
# `color_message`, the message again with ANSI colour codes: not for JSON lines.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}

# Key in the ASGI scope's "state" under which the auth dependencies note who called, for the
# access line (the middleware reads it when the request ends).
CALLER_KEY = "kenes.caller"


def note_caller(state: dict[str, Any] | None, kind: str, caller_id: object) -> None:
    """Record the authenticated caller (`user:<id>`, `collector:<id>`) for the access line."""
    if state is not None:
        state[CALLER_KEY] = f"{kind}:{caller_id}"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id, extras.

    Written here rather than taken from python-json-logger: the access line is formatted on
    every request, and this does a fraction of the work (bench/submit.py: logging cost ~12% of
    a submission with that library). orjson writes the line (and the stored answers) several
    times faster than the json module.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Process and thread names are not logged: skip collecting them for every record. Nor is
    # the caller's file, function and line: without _srcfile, logging skips walking the stack
    # for them (the logging HOWTO's "Optimization"; a third of the access line's cost).
    logging.logMultiprocessing = logging.logProcesses = logging.logThreads = False
    logging._srcfile = None
    # uvicorn's own access log would duplicate ours (which carries the request id).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
