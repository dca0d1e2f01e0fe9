"""privproxy's command line: one module per subcommand, each thin over the core."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from privproxy import __version__

COMMANDS = ("run", "demo", "check", "explain", "tune", "filter-log", "schema", "consent", "dsr", "report", "keys")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or just `only`'s subcommand: each subcommand's module (and what it imports,
    asyncio and mitmproxy for `run`) is loaded only when needed, so `privproxy filter-log` starts fast."""
    parser = argparse.ArgumentParser(
        prog="privproxy",
        description="A privacy filter reverse proxy: HTTPS enforcement, client IP truncation, identifier scrubbing.",
    )
    parser.add_argument("--version", action="version", version=f"privproxy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only in COMMANDS else COMMANDS:
        importlib.import_module(f"privproxy.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)
