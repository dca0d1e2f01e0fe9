"""`privproxy check [FILE]`: validate filters.yaml; exit 0 when valid, 1 with every error listed.

An empty file, one without `version`, and one that weakens a shipped protection without naming it in
`disable:` are errors. A valid file's summary names what it takes from the shipped baseline and what it
switches off, so a reviewer sees both without reading the whole file.
"""

from __future__ import annotations

import sys

from privproxy import protections
from privproxy.cli.common import load_policy, report
from privproxy.errors import PrivproxyError
from privproxy.policy import Policy


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="validate a filters.yaml")
    p.add_argument("file", nargs="?", help="default: ./filters.yaml, else the built-in defaults")
    p.set_defaults(func=cmd)


def summary(pol: Policy) -> list[str]:
    """The lines printed after OK: the baseline in force and the protections switched off."""
    rule_ids = {r.id for r in pol.rules.rules}
    rules = [i for i in pol.inherited if i in rule_ids]
    paths = [i for i in pol.inherited if i not in rule_ids]
    out = [
        "  shipped rules in force that the file does not mention: " + (", ".join(rules) or "none"),
        "  shipped sensitive paths in force that the file does not mention: " + (", ".join(paths) or "none"),
        "  sections left out, shipped settings in force: " + (", ".join(pol.inherited_sections) or "none"),
    ]
    if pol.disabled:
        out.append(f"  protections switched off by disable: ({len(pol.disabled)}):")
        out += [f"    {pid}: {protections.IDS[pid]}" for pid in pol.disabled]
    else:
        out.append("  protections switched off by disable: none")
    return out


def cmd(args) -> int:
    try:
        pol = load_policy(args.file)
    except PrivproxyError as e:
        return report(e)
    for w in pol.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{pol.path}: OK: {len(pol.rules.rules)} rules, {len(pol.sites.sites) + 1} sites, "
          f"{len(pol.scrubber.sensitive_paths)} sensitive paths, sha256 {pol.sha256[:12]}")
    print("\n".join(summary(pol)))
    return 0
