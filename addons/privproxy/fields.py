"""[rules] Field rules: which named value in which scope gets which action (C2, C4, C8, C9).

Names match case-insensitively, exactly or by glob (`utm_*`); an exact name beats a glob, and the rule written
first wins among equals. Brackets are literal, so vendor names such as `ud[em]` need no escaping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACTIONS = ("drop", "redact", "hash", "truncate", "generalize", "keep")
SCOPES = ("query", "path", "cookie", "set_cookie", "header", "referrer", "body")
REDACTED = "[redacted]"
MEMO_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    action: str
    scopes: frozenset[str]
    names: tuple[str, ...]
    controls: tuple[str, ...] = ()
    report_only: bool = False
    why: str = ""
    line: int = 0  # where it is written in filters.yaml, for `explain`
    regions: frozenset[str] = frozenset()  # countries it applies to (groups expanded); empty: everywhere


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` any run of characters, `?` exactly one; everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()))


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    exact: dict[tuple[str, str], Rule] = field(default_factory=dict, compare=False)
    globs: dict[str, tuple[tuple[re.Pattern[str], Rule], ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, rules: tuple[Rule, ...]) -> RuleSet:
        exact: dict[tuple[str, str], Rule] = {}
        globs: dict[str, list[tuple[re.Pattern[str], Rule]]] = {}
        for rule in rules:
            for scope in rule.scopes:
                for name in rule.names:
                    if "*" in name or "?" in name:
                        globs.setdefault(scope, []).append((glob_regex(name), rule))
                    else:
                        exact.setdefault((scope, name.lower()), rule)
        return cls(rules, exact, {k: tuple(v) for k, v in globs.items()})

    memo: dict[tuple[str, str], Rule | None] = field(default_factory=dict, compare=False)

    def find(self, scope: str, name: str) -> Rule | None:
        try:
            return self.memo[(scope, name)]
        except KeyError:
            pass
        key = name.lower()
        found = self.exact.get((scope, key))
        if found is None:
            for pattern, rule in self.globs.get(scope, ()):
                if pattern.fullmatch(key):
                    found = rule
                    break
        if len(self.memo) >= MEMO_SIZE:  # names come from traffic: bound what a flood of new names can cost
            self.memo.clear()
        self.memo[(scope, name)] = found
        return found
