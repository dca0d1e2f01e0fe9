"""privproxy's command line: one module per subcommand, each thin over the core."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from privproxy import __version__

COMMANDS = ("run", "demo", "check", "explain", "filter-log", "schema", "consent", "dsr", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privproxy",
        description="A privacy filter reverse proxy: HTTPS enforcement, client IP truncation, identifier scrubbing.",
    )
    parser.add_argument("--version", action="version", version=f"privproxy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from privproxy.cli import check, consent, demo, dsr, explain, filter_log, report, run, schema

    run.add_parser(sub)
    demo.add_parser(sub)
    check.add_parser(sub)
    explain.add_parser(sub)
    filter_log.add_parser(sub)
    schema.add_parser(sub)
    consent.add_parser(sub)
    dsr.add_parser(sub)
    report.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)
