"""`privproxy report [--config FILE] [--lang en|ja] [--format md|html] [-o FILE]`: the public disclosure (C7)."""

from __future__ import annotations

import sys
from pathlib import Path

from privproxy import __version__
from privproxy import report as core
from privproxy.cli.common import fail, load_policy
from privproxy.cli.common import report as print_errors
from privproxy.errors import PrivproxyError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="render the privacy notice (items kept, processing, retention, controls) "
                                      "from the rules in force")
    p.add_argument("--config", metavar="FILE", help="filters.yaml (default: ./filters.yaml, else the built-in rules)")
    p.add_argument("--format", choices=core.FORMATS, default="md", help="Markdown (default) or a standalone HTML page")
    p.add_argument("--lang", choices=core.LANGS, default="en",
                   help="en (default) or ja: the notice written for Japanese readers; filters.yaml `disclosure:` "
                        "names the controller and contact, and its controls_file the policy clauses")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    try:
        policy = load_policy(args.config)
    except PrivproxyError as e:
        return print_errors(e)
    text = core.render(core.build(policy, __version__, lang=args.lang), args.format)
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as e:
        return fail(f"--output {args.output}: {e.strerror or e}")
    return 0
