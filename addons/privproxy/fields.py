"""[rules] Field rules: which named value in which scope gets which action (C2, C4, C8, C9).

Names match case-insensitively, exactly or by glob (`utm_*`); an exact name beats a glob, and the rule written
first wins among equals. Brackets are literal, so vendor names such as `ud[em]` need no escaping. In the scopes
whose names the page or the SDK spells (query, body, referrer), a name no rule spells exactly is looked up again
in its normalized spelling (`userId`, `user-id`, `user[id]`, `uid[]`); `Echoes` carries what became of the
identifier values of one request to their copies elsewhere in it (issue 17).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from privproxy import geo
from privproxy.outcome import Action
from privproxy.percent import unquote_plus
from privproxy.schema_types import CONTROL, CONTROLS, arr, boolean, default_of, obj, string

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

ACTIONS = tuple(Action)
SCOPES = ("query", "path", "cookie", "set_cookie", "header", "referrer", "body")
REDACTED = "[redacted]"
MEMO_SIZE = 4096
MEMO_NAME = 256  # longer names are looked up every time: the memo holds at most MEMO_SIZE * MEMO_NAME characters

# Scopes whose names are spelled by page scripts, SDKs and form builders: `userId`, `user_id`, `user-id`,
# `User.Id`, PHP/Rails `user[id]` and list forms `uid[]`, `uid[0]` all name one field there. Cookie, Set-Cookie
# and header names are exact: servers read them byte for byte, so another spelling is another field.
NORMALIZED_SCOPES = frozenset({"query", "body", "referrer"})
# Why 4: separators and brackets removed, short names collide with unrelated ones (`s_id` site id is not `sid`,
# `c_id` campaign id is not `cid`, `e_n` event name is not `en`). Four letters and more (`userid`, `email`,
# `sessionid`) are words, and a spelling variant of one names the same thing.
MIN_NORMALIZED = 4
_LIST_MARK = re.compile(r"\[\d*\]")  # `uid[]`, `uid[0]`: one name sent as a list
_SPELLING = re.compile(r"[\s_.\-\[\]]+")


def list_base(name: str) -> str:
    """The lower-case name without list markers: `UID[]`, `uid[0]` -> `uid`."""
    return _LIST_MARK.sub("", name.lower()).strip() if "[" in name else name.lower().strip()


def normalize(name: str) -> str:
    """One spelling for the styles a name is written in: lower case, list markers gone, `[key]` -> `key`,
    separators (`_ - .` and spaces) gone: `User.Id`, `user-id`, `user[id]`, `userId[]` -> `userid`."""
    return _SPELLING.sub("", list_base(name))


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
    normalized: dict[tuple[str, str], Rule] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, rules: tuple[Rule, ...]) -> RuleSet:
        exact: dict[tuple[str, str], Rule] = {}
        globs: dict[str, list[tuple[re.Pattern[str], Rule]]] = {}
        normalized: dict[tuple[str, str], Rule] = {}
        for rule in rules:
            for scope in rule.scopes:
                for name in rule.names:
                    if "*" in name or "?" in name:
                        globs.setdefault(scope, []).append((glob_regex(name), rule))
                    else:
                        exact.setdefault((scope, name.lower()), rule)
                        norm = normalize(name)
                        if scope in NORMALIZED_SCOPES and len(norm) >= MIN_NORMALIZED:
                            normalized.setdefault((scope, norm), rule)
        return cls(rules, exact, {k: tuple(v) for k, v in globs.items()}, normalized,
                   ids=frozenset(r.id for r in rules))

    memo: dict[tuple[str, str], Rule | None] = field(default_factory=dict, compare=False)
    # The rule ids: a Change whose `rule` is one of them was made by a rule (not by a role or a detector).
    ids: frozenset[str] = field(default=frozenset(), compare=False)

    def find(self, scope: str, name: str) -> Rule | None:
        try:
            return self.memo[(scope, name)]
        except KeyError:
            pass
        key = name.lower()
        found = self._exact_or_glob(scope, key)
        if found is None and scope in NORMALIZED_SCOPES:
            found = self._normalized(scope, key)
        if len(name) > MEMO_NAME:  # a name as long as a body: kept by the memo, a few thousand would hold GBs
            return found
        if len(self.memo) >= MEMO_SIZE:  # names come from traffic: bound what a flood of new names can cost
            self.memo.clear()
        self.memo[(scope, name)] = found
        return found

    def _exact_or_glob(self, scope: str, key: str) -> Rule | None:
        found = self.exact.get((scope, key))
        if found is None:
            for pattern, rule in self.globs.get(scope, ()):
                if pattern.fullmatch(key):
                    return rule
        return found

    def _normalized(self, scope: str, key: str) -> Rule | None:
        """A name in another spelling: without list markers exactly or by glob (`uid[]`, `utm_id[0]`), then
        in the normalized spelling of the exact names. Globs never match normalized names: `_ga_*` made `ga*`
        would match `gallery`."""
        base = list_base(key)
        if base != key and base:
            found = self._exact_or_glob(scope, base)
            if found is not None:
                return found
        norm = normalize(key)
        return self.normalized.get((scope, norm)) if len(norm) >= MIN_NORMALIZED else None


# --- filters.yaml `rules:` ---------------------------------------------------------------------------------------
REGIONS = arr("Apply only to visitors from these countries (ISO 3166-1 alpha-2: GB, not UK) or groups (EU, EEA), "
              "e.g. stricter handling for EU visitors (C14). A visitor whose country is unknown gets the rule.",
              string("A country code or group.", pattern=r"^(?:[A-Z]{2}|EU|EEA)$"))
RULE = obj("A field rule: what happens to fields with these names in these scopes.", {
    "id": string("Short name; metrics, logs of decisions and `privproxy explain` cite it."),
    "action": string("What happens to a matching value.", enum=ACTIONS),
    "scopes": arr("Where the names are looked up.", string("A scope.", enum=SCOPES)),
    "names": arr("Field names, case-insensitive; `*` and `?` are wildcards.", string("A name or glob.")),
    "controls": CONTROLS,
    "why": string("The policy clause this rule implements (shown by explain and the disclosure report)."),
    "report_only": boolean("Count what the rule would change, change nothing.", default_of(Rule, "report_only")),
    "regions": REGIONS,
}, required=("id", "action", "scopes", "names"))
SCHEMA = arr("Field rules, first match wins.", RULE)


def parse_rules(node: Node | None) -> tuple[Rule, ...]:
    if node is None:
        return ()
    rules, seen = [], set()
    for n in node.seq():
        m = n.mapping(RULE.props)
        rid = m["id"].string() if "id" in m else ""
        if not rid:
            n.error("a rule needs an `id`", "add `id: a-short-name`; metrics and explain name rules by it")
        elif rid in seen:
            m["id"].error(f"duplicate rule id `{rid}`", "give each rule its own id")
        seen.add(rid)
        if "action" not in m:
            n.error("a rule needs an `action`", f"one of: {', '.join(ACTIONS)}")
        action = m["action"].choice(ACTIONS, "drop") if "action" in m else "drop"
        scopes = frozenset(x.choice(SCOPES, "query") for x in m["scopes"].seq()) if "scopes" in m else frozenset()
        if not scopes:
            n.error("a rule needs `scopes`", f"a list from: {', '.join(SCOPES)}")
        names = m["names"].strings() if "names" in m else ()
        if not names:
            n.error("a rule needs `names`", "a list of field names; `*` and `?` are wildcards")
        controls = m["controls"].strings() if "controls" in m else ()
        for c, cn in zip(controls, m["controls"].seq() if "controls" in m else [], strict=False):
            if not CONTROL.match(c):
                cn.error(f"`{c}` is not a control", "controls are C1 to C15 (see the policies' CONTROLS.md)")
        rules.append(Rule(
            id=rid, action=action, scopes=scopes, names=names, controls=controls,
            report_only=RULE.read(m, "report_only"),
            why=m["why"].string() if "why" in m else "", line=n.line,
            regions=parse_regions(m["regions"]) if "regions" in m else frozenset(),
        ))
    return tuple(rules)


def parse_regions(node: Node) -> frozenset[str]:
    """`regions:` of a rule: country codes and groups, as the set of countries they name."""
    codes = []
    for n in node.seq():
        code = n.string()
        if not geo.is_region(code):
            close = geo.region_guess(code)
            n.error(f"`{code}` is not a region", f"did you mean `{close}`?" if close else
                    "use ISO 3166-1 alpha-2 country codes (DE, JP, GB) or the groups EU, EEA")
        codes.append(code)
    return geo.expand(tuple(codes))


# --- identifier echoes -----------------------------------------------------------------------------------------
# A value a rule or a role treated as an identifier is the same identifier wherever else the request carries it:
# mixpanel-browser sends the device id again as `$anon_distinct_id: "$device:<id>"`, a Matomo event named
# itself after the member id sent in `uid`, a page URL repeats a visitor id under a name no rule knows.
ECHO_ACTIONS = frozenset({Action.HASH, Action.DROP, Action.REDACT})
ECHO_ROLES = frozenset({"client_id", "session_id", "user_id", "device_id", "contact", "click_id"})
# Why these lengths: an identifier is a random, account- or click-unique string, so another field holding
# exactly that value of 4 characters or more (a 4-digit member number) is a copy of it, while `1`, `en`, `yes`
# are everybody's values. Inside a longer value (`$device:<id>`, a URL, an event label) a short value turns up
# by chance (`2024` in a date, `gold` in a title), so only values of 8 characters or more are looked for there.
ECHO_MIN = 4
ECHO_MIN_INSIDE = 8
# Placeholders SDKs put in id fields when there is no id: copies of them identify no one.
NOT_IDENTIFIERS = frozenset({"null", "none", "nil", "true", "false", "undefined", "nan", "anonymous", "unknown",
                             "guest", "empty", "(none)", "(not set)", "not set", "redacted", REDACTED, "$direct"})
_FEW = 64  # up to this many identifiers, `in` per identifier (fast, in C); beyond, one pass over the text
# The search is counted, about one unit per character, identifier or value looked at, so that a request built to
# make it slow (thousands of identifiers over as many documents, identifiers sharing a prefix in many lengths)
# stops at about half a second instead of stalling the proxy: TooMuchWork, and the caller fails closed. A browser
# beacon needs a few thousand units, a 350 KB Segment batch of 1000 users some 400 000. The default limit; a
# URL's search gets one in proportion to its length (Scrubber.query), a beacon's the meter of all its work
# (privproxy.beacon.MAX_WORK).
MAX_ECHO_WORK = 3_000_000


class TooMuchWork(Exception):
    """Searching a request for identifier copies went over MAX_ECHO_WORK."""


@dataclass(slots=True)
class Echo:
    value: str
    replacement: str  # what a copy becomes: the identifier's pseudonym, or the redaction mark
    rule: str  # `echo:<rule>` in the Change
    action: str  # "hash" or "redact"
    report_only: bool
    n: int  # learned n-th in the request
    low: str = ""  # lower case: a copy inside another value is found in any case (`$device:EB77946E-...`)


@dataclass(slots=True)
class Echoes:
    """The identifiers one request carries, and what each became; `find` replaces their copies."""

    known: dict[str, Echo] = field(default_factory=dict)
    order: list[Echo] = field(default_factory=list)
    long: list[Echo] = field(default_factory=list)  # the ones looked for inside other values, in learned order
    long_n: list[int] = field(default_factory=list)  # their `n`, for bisect
    # first ECHO_MIN_INSIDE characters (lower case) -> [(length, {lower-case value: Echo})], longest first
    index: dict[str, list[tuple[int, dict[str, Echo]]]] = field(default_factory=dict)
    work: int = 0  # see MAX_ECHO_WORK
    limit: int = MAX_ECHO_WORK

    def __len__(self) -> int:
        return len(self.order)

    def spend(self, units: int) -> None:
        self.work += units
        if self.work > self.limit:
            raise TooMuchWork

    def learn(self, value: str, replacement: str | None, rule: str, action: str, report_only: bool = False) -> None:
        """`value` was treated as an identifier by `rule` and became `replacement` (None: removed)."""
        if len(value) < ECHO_MIN or value in self.known or value.lower() in NOT_IDENTIFIERS:
            return
        shown = REDACTED if replacement is None or action != "hash" else replacement
        if shown == value:
            return
        echo = Echo(value, shown, f"echo:{rule}", "hash" if action == "hash" else "redact", report_only,
                    len(self.order), value.lower())
        self.known[value] = echo
        self.order.append(echo)
        if len(value) >= ECHO_MIN_INSIDE:
            self.long.append(echo)
            self.long_n.append(echo.n)
            lengths = self.index.setdefault(echo.low[:ECHO_MIN_INSIDE], [])
            for length, values in lengths:
                if length == len(echo.low):
                    values.setdefault(echo.low, echo)
                    break
            else:
                lengths.append((len(echo.low), {echo.low: echo}))
                lengths.sort(key=lambda lv: lv[0], reverse=True)

    def forms(self, text: str) -> list[str]:
        """`text` in lower case, and decoded as a URL is (once, twice...): where copies are looked for."""
        return [t.lower() for t in (text, *_decodings(text))]

    def find(self, text: str, since: int = 0) -> tuple[str, list[Echo]] | None:
        """`text` with every copy of an identifier learned `since` then replaced; see `searcher`."""
        return self.searcher(since)(text, None)

    def searcher(self, since: int = 0) -> Callable[[str, list[str] | None], tuple[str, list[Echo]] | None]:
        """A search for copies of the identifiers learned `since` then: `search(text, forms)` gives `text` with
        each copy replaced (report-only ones left as they are) and the identifiers found, or None when it holds
        none. Inside a longer value a copy is found in any case and any percent-encoding; one that cannot be
        replaced where it stands (encoded twice) makes the whole value the redaction mark. `forms` is
        self.forms(text), for callers that search one value again and again."""
        known = self.known
        new = self.long[bisect.bisect_left(self.long_n, since):]
        few = len(new) <= _FEW

        def search(text: str, forms: list[str] | None) -> tuple[str, list[Echo]] | None:
            self.spend(4)
            whole = known.get(text)
            if whole is not None:
                return None if whole.n < since else (text if whole.report_only else whole.replacement, [whole])
            if not new or len(text) < ECHO_MIN_INSIDE:
                return None
            if forms is None:
                forms = self.forms(text)
            hits: list[Echo] = []
            for form in forms:
                if few:
                    self.spend(len(new) * (1 + len(form) // 512))
                    hits = [e for e in new if e.low in form]
                else:
                    hits = self._scan(form, since)
                if hits:
                    return self._replace(text, hits)
            return None

        return search

    def _replace(self, text: str, hits: list[Echo]) -> tuple[str, list[Echo]]:
        self.spend(len(hits) * (256 + len(text) // 8))  # each identifier: the text folded and searched again
        hits.sort(key=lambda e: len(e.value), reverse=True)  # an identifier inside a longer one: the longer first
        out = text
        active = [e for e in hits if not e.report_only]
        for e in active:  # as sent, mostly
            out = out.replace(e.value, e.replacement)
        if active and _still_in(out, active):  # in another case
            out = _replace_folded(out, active, decode=False)
            if _still_in(out, active):  # percent-encoded, or with `+` for a space
                out = _replace_folded(out, active, decode=True)
                if _still_in(out, active):  # encoded twice, or in a mix no single reading gives
                    out = REDACTED
        return out, hits

    def _scan(self, low: str, since: int) -> list[Echo]:
        """Every identifier in `low` in one pass: linear in the text however many identifiers there are."""
        index = self.index
        found: dict[str, Echo] = {}
        self.spend(len(low))
        for i in range(len(low) - ECHO_MIN_INSIDE + 1):
            lengths = index.get(low[i:i + ECHO_MIN_INSIDE])
            if lengths:
                self.spend(len(lengths))
                for length, values in lengths:  # a dict per length: one lookup, however many share the prefix
                    e = values.get(low[i:i + length])
                    if e is not None and e.n >= since:
                        found[e.value] = e
                        break
        return list(found.values())


def _decodings(text: str, levels: int = 3) -> list[str]:
    """`text` percent-decoded once, twice... (a URL inside a URL is encoded once more), while that changes it."""
    out = []
    while levels and ("%" in text or "+" in text):
        decoded = unquote_plus(text, errors="replace")
        if decoded == text:
            break
        out.append(decoded)
        text, levels = decoded, levels - 1
    return out


# Why no regex: the copies used to be replaced with one pattern per identifier (each character as itself or
# %-encoded, any case). A pattern tried at every position of the text rereads as much of it as matches the
# identifier's beginning: `uid=aaaa...ab` (16 KB) and a value of 48 KB of `A` took 9 s, quadratic (issue 17).
# Folding the text once (lower case, optionally %-decoded) and finding the identifier with str.find is linear;
# a copy no folding reveals is still found by _still_in, and the value becomes the redaction mark (fail closed).
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _fold(text: str, decode: bool) -> tuple[str, list[int] | None] | None:
    """`text` in lower case, %-decoded with `+` as a space when `decode`, and where each of its characters
    starts in `text` (None: where it stands); None when lower case would move the characters."""
    if not decode:
        low = text.lower()
        return (low, None) if len(low) == len(text) else None
    chars: list[str] = []
    starts: list[int] = []
    pos = 0
    for m in _ESCAPES.finditer(text):
        chars.append(text[pos:m.start()].replace("+", " "))
        starts.extend(range(pos, m.start()))
        decoded = bytes.fromhex(m.group().replace("%", "")).decode("utf-8", "surrogateescape")
        chars.append(decoded)
        if decoded.isascii():
            starts.extend(range(m.start(), m.end(), 3))
        else:
            at = m.start()
            for ch in decoded:  # 3 characters of the text per byte of the character
                starts.append(at)
                at += 3 * len(ch.encode("utf-8", "surrogateescape"))
        pos = m.end()
    chars.append(text[pos:].replace("+", " "))
    starts.extend(range(pos, len(text) + 1))
    low = "".join(chars).lower()
    return (low, starts) if len(low) == len(starts) - 1 else None


def _replace_folded(text: str, echoes: list[Echo], decode: bool) -> str:
    """Each copy of `echoes` that `_fold` reveals, replaced where it stands in `text`, in its spelling as sent."""
    for e in echoes:
        folded = _fold(text, decode)
        if folded is None:
            return text
        low, starts = folded
        i = low.find(e.low)
        if i < 0:
            continue
        out, pos, n = [], 0, len(e.low)
        while i >= 0:
            start, end = (i, i + n) if starts is None else (starts[i], starts[i + n])
            out += (text[pos:start], e.replacement)
            pos = end
            i = low.find(e.low, i + n)
        out.append(text[pos:])
        text = "".join(out)
    return text


def _still_in(text: str, echoes: list[Echo]) -> bool:
    forms = [t.lower() for t in (text, *_decodings(text))]
    return any(e.low in form for e in echoes for form in forms)
