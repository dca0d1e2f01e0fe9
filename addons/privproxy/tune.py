"""Rules from real traffic: the fields no rule classifies, by frequency, with the rule each would get (C2, C8).

Each request (from a HAR file, a mitmproxy flow dump or an access log) goes through the proxy's own pipeline
(privproxy.explain); the query parameters, cookies and beacon fields it reports as unclassified are counted.
Values are read only to describe them (how many distinct ones, how many look like identifiers) and are never
kept: distinct values are counted by a keyed digest in a bounded set, and nothing but names and counts is
reported.

The suggestion is the first rule of HEURISTIC that applies (the command prints it with the list).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from privproxy import explain, log_filter
from privproxy.policy import Policy
from privproxy.scrub import unquote_param

MIN_SEEN = 5  # fewer values than this say nothing about a field
MAX_DISTINCT = 1000  # distinct values counted per field, then "at least"
FEW = 20  # at most this many distinct values: a category
HEURISTIC = f"""\
1. The name says what it is: an ad click id (`*clid`, `*click_id`, `gbraid`...) -> drop; a credential or
   session token (`*token*`, `*secret*`, `*password*`, `*session*`, `sig`, `code`, `key`...) -> drop; contact
   data or a person's name (`*email*`, `*phone*`, `*address*`, `name`, `first_name`...) -> redact; an
   identifier (`*id`, `*uuid`, `*user*`, `*visitor*`, `*device*`, `*customer*`...) -> hash.
2. The values say what it is (seen {MIN_SEEN} times or more): at least half identifier-shaped (8+ characters
   mixing letters and digits, long hex, 9+ digits) and at least half distinct -> hash; {FEW} distinct values or
   fewer (a category, a setting) -> keep; more, not identifier-shaped (free text?) -> redact, low confidence.
3. Otherwise (seen too rarely, or a beacon field, whose values are not read) -> keep, low confidence: the
   detectors still scan it (unknown_fields: detect).
Only names and counts are reported: values are read to count them, by a keyed digest that is not kept."""

_CLICK_NAMES = frozenset({"gclid", "dclid", "fbclid", "msclkid", "gbraid", "wbraid", "_gl", "yclid", "igshid",
                          "mc_eid", "_hsenc", "ttclid", "twclid", "li_fat_id", "epik", "irclid", "sccid"})
_SECRET = frozenset({"token", "secret", "password", "passwd", "pwd", "pass", "session", "sess", "sessid",
                     "sessionid", "sig", "signature", "apikey", "key", "auth", "authorization", "otp", "nonce",
                     "credential", "credentials", "jwt", "csrf", "xsrf", "sid"})
_CONTACT = frozenset({"email", "mail", "phone", "tel", "telephone", "mobile", "fax", "address", "zip", "postal",
                      "postcode", "birthday", "dob", "fname", "lname", "surname", "firstname", "lastname",
                      "fullname", "username"})
_NAMED = frozenset({"first", "last", "full", "given", "family", "middle", "user", "real", "display", "nick"})
_ID_LAST = frozenset({"id", "uid", "uuid", "guid", "cid", "ids"})
_WHO = frozenset({"user", "visitor", "member", "customer", "client", "device", "anon", "anonymous", "account",
                  "profile", "subscriber", "recipient", "distinct", "person", "buyer"})


def _tokens(name: str) -> list[str]:
    """`userId`, `user_id`, `User-ID` -> ["user", "id"]."""
    return [t for t in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if t]


def _by_name(name: str) -> tuple[str, str] | None:
    """(action, why) when the name alone says what the field holds."""
    low = name.lower()
    tokens = _tokens(name)
    if not tokens:
        return None
    if low in _CLICK_NAMES or tokens[-1].endswith("clid") or "clkid" in low or "click_id" in "_".join(tokens):
        return "drop", "the name of an ad click id: one click of one person"
    if any(t in _SECRET or t.endswith(("token", "sessid", "sessionid", "password")) for t in tokens) \
            or (tokens[-1] == "code" and (len(tokens) == 1 or tokens[-2] in ("auth", "oauth", "verification"))):
        return "drop", "the name of a credential or session token: never needed in logs or analytics"
    if any(t in _CONTACT for t in tokens) or tokens == ["name"] or ("name" in tokens and _NAMED & set(tokens)):
        return "redact", "the name of contact data or a person's name"
    if tokens[-1] in _ID_LAST or tokens[-1].endswith(("uuid", "guid")) or _WHO & set(tokens):
        return "hash", "the name of an identifier: a pseudonym keeps unique counts per period"
    return None


# An identifier in a name: a long run of digits or hex, or a token mixing letters and digits (`uid_8f3a9c2e71`
# is a name with an id in it; `utm_source2` is not).
_ID_NAME = re.compile(r"\d{6,}|[0-9a-fA-F]{12,}|(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}")
_ID_VALUE = re.compile(r"(?=[^\s]*\d)(?=[^\s]*[A-Za-z])[A-Za-z0-9._~+/=-]{8,}|[0-9a-fA-F]{12,}|\d{9,}")


@dataclass
class Field:
    scope: str  # query, cookie, body
    name: str
    seen: int = 0  # requests that carried it
    values: int = 0  # values read (none for beacon fields)
    id_like: int = 0  # values of identifier shape
    distinct: set[bytes] = field(default_factory=set, repr=False)  # keyed digests, never the values
    vendors: Counter[str] = field(default_factory=Counter)

    @property
    def distinct_count(self) -> int:
        return len(self.distinct)


@dataclass(frozen=True)
class Suggestion:
    scope: str
    name: str
    seen: int
    distinct: int | None  # None: values not read
    distinct_capped: bool
    id_like_share: float | None
    action: str  # drop, redact, hash, keep
    confident: bool
    why: str
    vendors: tuple[str, ...] = ()


class Tuner:
    """Counts what the pipeline leaves unclassified, request by request."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.requests = 0
        self.failed = 0
        self.fields: dict[tuple[str, str], Field] = {}
        self._key = os.urandom(16)  # digests of values are unrelated to anything outside this run

    def add(self, sample: explain.Sample) -> None:
        self.requests += 1
        try:
            ex = explain.explain(self.policy, sample)
        except Exception:  # noqa: BLE001 - one request the pipeline cannot read does not stop the survey
            self.failed += 1
            return
        values = _values(ex)
        vendor = ex.vendor
        for scope, sent in dict.fromkeys(ex.unclassified):
            if vendor and scope == "query":
                continue  # a beacon's parameters are its vendor's fields: the codec's verdict is the "body" entry
            name = self._shown(sent)
            f = self.fields.get((scope, name))
            if f is None:
                f = self.fields[(scope, name)] = Field(scope, name)
            f.seen += 1
            if vendor and scope == "body":
                f.vendors[vendor] += 1
            for v in values.get((scope, sent), ()):
                f.values += 1
                f.id_like += _ID_VALUE.fullmatch(v) is not None
                if len(f.distinct) < MAX_DISTINCT:
                    f.distinct.add(hashlib.blake2b(v.encode("utf-8", "surrogatepass"), key=self._key,
                                                   digest_size=8).digest())

    def _shown(self, name: str) -> str:
        """A name as tune prints it: one that is itself personal data or an identifier (`?jane@example.com`, a
        card number as a cookie name) is printed as what it is, `[email]`, `[id]`, never as sent."""
        d = self.policy.scrubber.detectors
        if d.could_contain(name):
            hits = d.scan(name)
            if hits:
                return f"[{hits[0].detector}]"
        return "[id]" if _ID_NAME.search(name) else name

    def suggestions(self) -> list[Suggestion]:
        """Most frequent first."""
        out = [suggest(f) for f in self.fields.values()]
        return sorted(out, key=lambda s: (-s.seen, s.scope, s.name))


def _values(ex: explain.Explanation) -> dict[tuple[str, str], list[str]]:
    """The values of the request's query parameters and cookies as the pipeline read them, by (scope, name)."""
    got: dict[tuple[str, str], list[str]] = {}
    t = ex.state.target
    query = t.query if t is not None and t.query else ""
    for part in query.split("&") if query else ():
        if part:
            name, _, value = part.partition("=")
            got.setdefault(("query", unquote_param(name)), []).append(unquote_param(value))
    for header in ex.sample.header("cookie"):
        for c in header.split(";"):
            name, _, value = c.strip().partition("=")
            if name:
                got.setdefault(("cookie", name), []).append(value)
    return got


def suggest(f: Field) -> Suggestion:
    """The rule a field would get (module docstring: the heuristic, in order)."""
    name = f.name.strip()
    distinct = f.distinct_count if f.values else None
    share = f.id_like / f.values if f.values else None

    def made(action: str, confident: bool, why: str) -> Suggestion:
        return Suggestion(f.scope, f.name, f.seen, distinct, len(f.distinct) >= MAX_DISTINCT, share, action,
                          confident, why, tuple(v for v, _ in f.vendors.most_common()))

    by_name = _by_name(name)
    if by_name is not None:
        return made(by_name[0], True, by_name[1])
    if f.values >= MIN_SEEN and distinct is not None and share is not None:
        ratio = distinct / f.values
        if share >= 0.5 and ratio >= 0.5:
            return made("hash", True, f"{share:.0%} of its values look like identifiers and {ratio:.0%} are "
                                      "distinct")
        if distinct <= FEW:
            return made("keep", True, f"only {distinct} distinct value{'s' if distinct != 1 else ''}: a category "
                                      "or a setting, not a person")
        return made("redact", False, f"{distinct}{'+' if len(f.distinct) >= MAX_DISTINCT else ''} distinct values "
                                     "that do not look like identifiers (free text?): redact, or keep if you "
                                     "know them to be harmless")
    if f.scope == "body":
        return made("keep", False, "no name hint, and a beacon field's values are not read: the detectors still "
                                   "scan it; check with `privproxy explain`")
    return made("keep", False, f"seen {f.values} time{'s' if f.values != 1 else ''}: too rarely to judge; the "
                               "detectors still scan it")


# --- inputs that are not requests: access logs ------------------------------------------------------------

def log_samples(lines: Iterable[str], fmt: str) -> Iterator[explain.Sample]:
    """Requests of an access log (combined or json lines), with the referrer and user agent as headers. A line
    that does not parse is skipped."""
    for raw in lines:
        raw = raw.rstrip("\r\n")
        if not raw:
            continue
        if fmt == "json":
            sample = _json_sample(raw)
        else:
            sample = _combined_sample(raw)
        if sample is not None:
            yield sample


def _combined_sample(raw: str) -> explain.Sample | None:
    m = log_filter.COMBINED.match(raw)
    if m is None:
        return None
    rq = log_filter.request_line(m.group(5))
    if rq is None:
        return None
    headers = [(k, v) for k, v in (("Referer", m.group(8)), ("User-Agent", m.group(9))) if v and v != "-"]
    return explain.Sample(rq[0], rq[1], tuple(headers))


def _json_sample(raw: str) -> explain.Sample | None:
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    flat = _flat(doc)
    method, target = flat.get("method", "GET"), None
    for k in log_filter.REQUEST_LINE_KEYS:
        rq = log_filter.request_line(flat[k]) if k in flat else None
        if rq is not None:
            method, target = rq[0], rq[1]
    for k in log_filter.URL_KEYS:
        if target is None and k in flat:
            target = flat[k]
    if not target:
        return None
    named = (("Referer", log_filter.REFERRER_KEYS), ("User-Agent", log_filter.AGENT_KEYS))
    headers = [(h, flat[k]) for h, keys in named for k in keys if flat.get(k)]
    return explain.Sample(method if method.isalpha() else "GET", target, tuple(headers))


def _flat(doc: dict[str, Any], depth: int = 0) -> dict[str, str]:
    """String values by lower-case key, nested objects (Caddy's `request`) included; the first one wins."""
    out: dict[str, str] = {}
    for k, v in doc.items():
        if isinstance(v, str):
            out.setdefault(k.lower(), v)
        elif isinstance(v, dict) and depth < 3:
            for kk, vv in _flat(v, depth + 1).items():
                out.setdefault(kk, vv)
    return out


# --- output -------------------------------------------------------------------------------------------

def as_json(t: Tuner) -> dict[str, Any]:
    return {
        "requests": t.requests,
        "unreadable": t.failed,
        "heuristic": HEURISTIC,
        "fields": [{"scope": s.scope, "name": s.name, "seen": s.seen, "distinct_values": s.distinct,
                    "distinct_at_least": s.distinct_capped, "id_like_share": None if s.id_like_share is None
                    else round(s.id_like_share, 3), "suggested": s.action, "confident": s.confident, "why": s.why,
                    "vendors": list(s.vendors)} for s in t.suggestions()],
        "snippet": snippet(t.suggestions()),
    }


SCOPE_OF = {"query": "query", "cookie": "cookie", "body": "body"}


def snippet(suggestions: list[Suggestion]) -> str:
    """`rules:` entries for filters.yaml, one per (action, scope), for the confident suggestions that change
    something. Names are quoted as YAML strings."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in suggestions:
        if s.name.startswith("["):
            continue  # personal data or an identifier as a name (Tuner._shown): no rule names it, the detectors act
        if s.confident and s.action != "keep":
            groups.setdefault((s.action, SCOPE_OF[s.scope]), []).append(s.name)
    kept = [s for s in suggestions if s.confident and s.action == "keep" and not s.name.startswith("[")]
    lines = ["rules:"]
    for (action, scope), names in sorted(groups.items()):
        lines += [f"  - id: tuned-{scope}-{action}",
                  f"    action: {action}",
                  f"    scopes: [{scope}]",
                  f"    names: [{', '.join(_yaml_str(n) for n in sorted(names))}]",
                  "    why: \"privproxy tune: unclassified in real traffic\"",
                  "    report_only: true          # count first; remove this line to apply"]
    if len(lines) == 1:
        lines.append("  []  # nothing to add")
    if kept:
        lines.append("# kept as they are (few distinct values): " + ", ".join(f"{s.scope} {s.name}" for s in kept))
        if any(s.scope == "query" for s in kept):
            lines.append("# (logging.query_allowlist can name the query parameters among them that logs keep)")
    return "\n".join(lines) + "\n"


def _yaml_str(name: str) -> str:
    return orjson.dumps(name).decode()  # a JSON string is a YAML string


def text(t: Tuner) -> str:
    rows = t.suggestions()
    out = [f"{t.requests} request(s) read" + (f", {t.failed} the pipeline could not read" if t.failed else "")
           + f"; {len(rows)} field(s) no rule classifies (names only, never values):", ""]
    if rows:
        out.append(f"{'seen':>6}  {'distinct':>8}  {'id-like':>7}  {'scope':<6}  {'suggest':<7}  name / why")
        for s in rows:
            distinct = "-" if s.distinct is None else f"{s.distinct}{'+' if s.distinct_capped else ''}"
            share = "-" if s.id_like_share is None else f"{s.id_like_share:.0%}"
            mark = "" if s.confident else "?"
            via = f" ({', '.join(s.vendors)})" if s.vendors else ""
            out.append(f"{s.seen:>6}  {distinct:>8}  {share:>7}  {s.scope:<6}  {s.action + mark:<7}  "
                       f"{s.name}{via}: {s.why}")
        out += ["", "? = low confidence. How suggestions are made:", *("  " + line for line in
                                                                        HEURISTIC.splitlines()), "",
                "filters.yaml snippet (confident suggestions, report-only first):", "", snippet(rows)]
    return "\n".join(out).rstrip() + "\n"
