"""[logging.query_allowlist] For sites that prefer to name what their logs keep: when set, every query parameter
of a logged URL (path and referrer) whose name it does not list is dropped from the log record (C2, C3). The
request the origin gets keeps all of them. Applied to the URL after the rules, so an identifier copied into an
allowed parameter is already replaced (fields.Echoes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import re2

from privproxy.percent import unquote_plus
from privproxy.schema_types import arr, string

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Parameter names, case-insensitive; `*` any run of characters, `?` one. Not `active` (no list in
    filters.yaml): every parameter is kept; an empty list keeps none."""

    names: tuple[str, ...] = ()
    active: bool = False
    regex: re2._Regexp | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # RE2: a glob with several `*` would backtrack in `re` on a long name from the request (cubic in it).
        if self.active:
            body = "|".join("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in n.lower())
                            for n in self.names)
            object.__setattr__(self, "regex", re2.compile(f"(?s)(?:{body})" if body else "[^\\x00-\\x{10FFFF}]"))

    def keeps(self, name: str) -> bool:
        return self.regex is None or self.regex.fullmatch(name.lower()) is not None

    def apply(self, url: str) -> tuple[str, tuple[str, ...]]:
        """`url` with the parameters of its query it does not list removed, and the names removed (as sent)."""
        if self.regex is None or "?" not in url:
            return url, ()
        head, _, rest = url.partition("?")
        query, sep, fragment = rest.partition("#")
        kept, dropped = [], []
        for part in query.split("&"):
            if not part:
                continue
            raw = part.partition("=")[0]
            name = unquote_plus(raw, errors="replace") if "%" in raw or "+" in raw else raw
            if self.keeps(name):
                kept.append(part)
            else:
                dropped.append(name)
        if not dropped:
            return url, ()
        out = head + ("?" + "&".join(kept) if kept else "")
        return out + sep + fragment, tuple(dropped)


SCHEMA = arr("Query parameters the logs keep (globs, case-insensitive); when set, every other parameter is "
             "dropped from logged paths and referrers, not from forwarded requests. Default: no list, the rules "
             "decide.", string("A parameter name or glob (`utm_*`)."))


def parse(node: Node | None) -> Allowlist:
    if node is None:
        return Allowlist()
    names = []
    for n in node.seq():
        name = n.string()
        if not name:
            n.error("an empty name", "write a parameter name such as `q` or a glob such as `utm_*`")
            continue
        names.append(name)
    return Allowlist(tuple(names), active=True)
