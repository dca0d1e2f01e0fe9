"""Helpers shared by subcommands: reporting user errors the same way everywhere."""

from __future__ import annotations

import sys
from pathlib import Path

from privproxy import policy
from privproxy.errors import ConfigError, ConfigErrors, PrivproxyError


def fail(message: str) -> int:
    print(f"privproxy: {message}", file=sys.stderr)
    return 1


def load_policy(path: str | None) -> policy.Policy:
    """--config, else ./filters.yaml when present, else the built-in defaults. Raises ConfigError(s)."""
    if path:
        return policy.load(path)
    if Path("filters.yaml").is_file():
        return policy.load("filters.yaml")
    return policy.default()


def report(e: PrivproxyError) -> int:
    errors = e.errors if isinstance(e, ConfigErrors) else [e]
    for err in errors:
        print(str(err), file=sys.stderr)
    if isinstance(e, (ConfigError, ConfigErrors)):
        print(f"privproxy: {len(errors)} error(s) in the configuration; nothing was changed", file=sys.stderr)
    return 1
