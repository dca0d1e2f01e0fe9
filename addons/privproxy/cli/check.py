"""`privproxy check [FILE]`: validate filters.yaml; exit 0 when valid, 1 with every error listed."""

from __future__ import annotations

import sys

from privproxy.cli.common import load_policy, report
from privproxy.errors import PrivproxyError


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="validate a filters.yaml")
    p.add_argument("file", nargs="?", help="default: ./filters.yaml, else the built-in defaults")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    try:
        pol = load_policy(args.file)
    except PrivproxyError as e:
        return report(e)
    for w in pol.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{pol.path}: OK: {len(pol.rules.rules)} rules, {len(pol.sites.sites) + 1} sites, "
          f"{len(pol.scrubber.sensitive_paths)} sensitive paths, sha256 {pol.sha256[:12]}")
    return 0
