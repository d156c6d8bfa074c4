"""Command-line flags that also read an environment variable, and start-up validation errors."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from fleetdns.dnsname import is_dns_label


class ConfigError(ValueError):
    """Invalid configuration; names the flag (and its variable) and the bad value."""

    def __init__(self, flag: str, value: object, reason: str) -> None:
        super().__init__(f"invalid {flag}={value!r}: {reason}")
        self.flag = flag
        self.value = value


def add_flag(parser: argparse.ArgumentParser, flag: str, env: str | None, default: Any, help_text: str,
             **kwargs: Any) -> None:
    """``--flag`` whose default comes from ``$env`` when set; help shows both."""
    env_value = os.environ.get(env) if env else None
    value = env_value if env_value is not None else default
    shown = f" (env {env})" if env else ""
    parser.add_argument(flag, default=value, help=f"{help_text}{shown}; default: {default!r}", **kwargs)


def env_name(prefix: str, flag: str) -> str:
    """``--max-in-flight`` with prefix ``FLEETDNS_PROBER_`` → ``FLEETDNS_PROBER_MAX_IN_FLIGHT``."""
    return prefix + flag.lstrip("-").upper().replace("-", "_")


def env_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_host_port(flag: str, value: str) -> tuple[str, int]:
    """``127.0.0.1:8888``, ``:8080`` (all interfaces) or ``[::1]:8080``."""
    match = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d{1,5})", value.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(flag, value, "expected HOST:PORT, for example 127.0.0.1:8888")
    return match.group(1) or "0.0.0.0", int(match.group(2))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(flag: str, value: str) -> float:
    """Go-style durations (``30s``, ``1m30s``, ``500ms``) to seconds; a bare number means seconds."""
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(flag, value, "expected a duration such as 500ms, 30s or 1m30s")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def parse_positive_duration(flag: str, value: str) -> float:
    """``parse_duration`` that also refuses zero: an interval or a wait of nothing is a typo."""
    seconds = parse_duration(flag, value)
    if seconds <= 0:
        raise ConfigError(flag, value, "must be positive")
    return seconds


def parse_choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(flag, value, f"expected one of {', '.join(allowed)}")
    return value


def parse_int_in_range(flag: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(flag, value, "expected an integer") from None
    if not low <= number <= high:
        raise ConfigError(flag, value, f"must be from {low} to {high}")
    return number


def require_dns_label(flag: str, value: str) -> None:
    """Namespaces, Lease names and regions: Kubernetes accepts only RFC 1123 labels there."""
    if not is_dns_label(value):
        raise ConfigError(flag, value, "must be a DNS label (lower-case letters, digits and '-', at most 63)")


def exit_on_config_error(run: Callable[[], int]) -> NoReturn:
    """Run a command; a ConfigError ends it with exit code 2 and one clear line on stderr."""
    try:
        code = run()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


def add_list_flag(parser: argparse.ArgumentParser, flag: str, env: str | None, help_text: str) -> None:
    """Repeatable ``--flag`` (each value may itself be a comma list); ``$env`` (comma list) when never given."""
    env_value = os.environ.get(env) if env else None
    shown = f" (env {env}, comma-separated)" if env else ""
    parser.add_argument(flag, action="append", default=None, help=f"{help_text}; repeatable{shown}")
    dest = flag.lstrip("-").replace("-", "_")
    parser.set_defaults(**{f"_{dest}_env": env_value})


def list_flag_values(args: argparse.Namespace, flag: str) -> list[str]:
    """Values of a flag added by ``add_list_flag``: from the command line, else from its variable."""
    dest = flag.lstrip("-").replace("-", "_")
    given = getattr(args, dest) or []
    if not given:
        env_value = getattr(args, f"_{dest}_env", None)
        given = [env_value] if env_value else []
    return [item.strip() for value in given for item in value.split(",") if item.strip()]
