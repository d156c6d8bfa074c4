"""Structured logs: one JSON object (or key=value line) per event, never a secret."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")  # --log-level of every command
LOG_FORMATS = ("json", "text")  # --log-format of every command
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        head = f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()} " \
               f"logger={record.name} msg={json.dumps(record.getMessage())}"
        tail = "".join(f" {k}={json.dumps(v, default=str)}" for k, v in fields.items())
        text = head + tail
        if record.exc_info:
            text += " error=" + json.dumps(self.formatException(record.exc_info))
        return text


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format (``json`` or ``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if fmt == "json" else _KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("waitress", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
