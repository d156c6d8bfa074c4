"""Structured logs: one JSON object (or key=value line) per event, never a secret."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from fleetdns.config import add_flag, env_name, parse_choice

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


def add_log_flags(parser: argparse.ArgumentParser, env_prefix: str = "") -> None:
    """``--log-level`` and ``--log-format`` of every command; their variables are ``<env_prefix>LOG_LEVEL`` and
    ``<env_prefix>LOG_FORMAT``."""
    add_flag(parser, "--log-level", env_name(env_prefix, "--log-level"), "info", "debug, info, warning or error")
    add_flag(parser, "--log-format", env_name(env_prefix, "--log-format"), "json", "json or text (key=value)")


def parse_log_flags(args: argparse.Namespace) -> tuple[str, str]:
    """(level, format) from ``add_log_flags``'s flags, in either case; ConfigError names the flag."""
    return (parse_choice("--log-level", args.log_level.lower(), LOG_LEVELS),
            parse_choice("--log-format", args.log_format.lower(), LOG_FORMATS))
