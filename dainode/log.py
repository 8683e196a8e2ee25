"""Logging set-up: one line per event, tagged with the service name; text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _service(record: logging.LogRecord) -> str:
    name = record.name
    return name[len("dainode."):] if name.startswith("dainode.") else name


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {_service(record)}: {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            # Tracebacks only at error level, indented so the event stays one logical entry.
            line += "\n" + self.formatException(record.exc_info).replace("\n", "\n    ")
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": _timestamp(record), "level": record.levelname.lower(), "service": _service(record), "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = _LEVELS.get(level, logging.INFO)
    logging.getLogger("dainode").setLevel(numeric)
    # Libraries (libp2p, httpx, ...) are chatty at info; show their warnings unless debugging.
    root.setLevel(numeric if numeric == logging.DEBUG else logging.WARNING)
