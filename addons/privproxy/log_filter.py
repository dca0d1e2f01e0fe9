"""The offline log filter: existing nginx/Apache/Caddy logs through the same rules as live traffic (C2, C9, C11).

A target and a referrer come out as the proxy's own record has them (pipeline.log_record: Scrubber.url for the
"log" destination, "-" for a target it refuses); the fast path that does most URLs piece by piece is held to that
by a property test. Fail closed: a line that cannot be parsed is never written out as it came; it is dropped (or
quarantined when the operator asks) and counted. Log lines repeat the same URLs, referrers and agents over and
over, so each of those is scrubbed once and remembered (bounded caches).

Besides Combined and JSON lines: Apache's vhost_combined (the Combined path after `%v:%p`), Apache and nginx error
logs and the operator's own layout (`--regex` with named groups). In those, every address is truncated, request
lines, URLs and file paths that end with a request's path go through the same URL rules, and all other text
through the detectors (tests/unit/test_log_filter_formats.py).
"""

from __future__ import annotations

import gc
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, BinaryIO

import orjson

from privproxy import generalize, target, truncate, vendors, wire
from privproxy.access_log.formats import one_line, quoted
from privproxy.access_log.formats import text as record_text
from privproxy.fields import ECHO_ACTIONS, ECHO_MIN, REDACTED
from privproxy.percent import unquote_plus
from privproxy.policy import Policy
from privproxy.scrub import Change, quote_safe, split_origin, unquote_param
from privproxy.sites import Site
from privproxy.truncate import OCTET
from privproxy.truncate import QUAD as _QUAD

FORMATS = ("combined", "json", "vhost_combined", "apache-error", "nginx-error", "regex")  # regex: LogFilter(regex=)
_UNPLANNED = object()
_UNREADABLE = "\x00unreadable"  # LogFilter._target: a request target the proxy refuses (compared by `is`)
_UNREADABLE_RULES = ("limit:unreadable_path",)
BLOCK = 1 << 20  # bytes read and handed to a worker at a time
MAX_LINE = 1 << 24

# host ident authuser [time] "request" status bytes ["referer" "user-agent"] [anything nginx appends]
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled: one step per run of plain characters
COMBINED = re.compile(
    rf'^(\S+) (\S+) (\S+) \[([^\]]*)\] {_Q} (\d{{3}}|-) (\d+|-)(?: {_Q} {_Q})?(.*)$'
)
# The usual line: COMBINED's fields without quotes in them, the request as _REQUEST reads it, a referrer and a
# user agent and nothing after them. Possessive: nothing to give back, no field can match the separator after it.
# Its classes are narrower than COMBINED's (printable ASCII for \\S, ASCII digits for \\d: sre checks a range
# faster than a Unicode category), so it matches less and anything else takes the full expression. A host that is
# a dotted quad is read in three groups, the first three octets (with their dots) and the last, so that masking it
# to /24 is a concatenation; any other host is the fourth group.
_USUAL = re.compile(rf'(?:((?:{OCTET}\.){{3}})({OCTET}) |([!#-~]++) )[!#-~]++ ([!#-~]++) \[([^\]"]*+)\] '
                    r'"([A-Z][A-Z0-9_-]{0,19}) ([!#-~]++) (HTTP/[0-9](?:\.[0-9])?)" ([0-9]{3}|-) ([0-9]++|-) '
                    r'"([^"]*+)" "([^"]*+)"\Z')
_ADDRESS_START = frozenset("0123456789[")  # a host that may be an address (split_origin decides)
_ABSOLUTE = re.compile(r"^(https?://[^/?#\s@]*)(/.*)$", re.S | re.I)  # no user:password@: Scrubber.url
_REFUSED = target.BAD_CHAR  # characters the proxy refuses in a request target (target.parse)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})  # all match _REQUEST's
_PROTOCOLS = frozenset({"HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/2", "HTTP/3"})  # and so do these
_REQUEST = re.compile(r"^([A-Z][A-Z0-9_-]{0,19}) (\S+) (HTTP/\d(?:\.\d)?)$")

# Error logs and other layouts. A host name as a virtual host or a Host (an address is truncated instead).
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
# In an error message: a request line (1-3), an absolute URL (4), or a file path (the rest).
_MESSAGE_TOKEN = re.compile(r"\b([A-Z][A-Z0-9_-]{0,19}) (\S+) (HTTP/\d(?:\.\d)?)(?![\w.])"
                            r"|\b((?i:https?|wss?|ftp)://[^\s\"'<>]+)"
                            r"|(?<![\w/.~:%-])/[^\s\"'<>,]*")
# Apache 2.2 and 2.4 (`%t`, `%{u}t`, `%{cu}t`): `[Tue Dec 01 10:00:00.123456 2026]`, `[2026-12-01 10:00:00.123456]`
_APACHE_TIME = re.compile(r"\[(?:[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,6})? \d{4}"
                          r"|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d{1,6})?)\]")
_APACHE_TAG = re.compile(r"[\w.-]*:\w+|\w+|pid \d+(?::tid \d+)?")  # [core:error], [error], [pid 1:tid 2]
_NGINX_ERROR = re.compile(r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[[a-z]+\] \d+#\d+: (?:\*\d+ )?)(.*)\Z", re.S)
_NGINX_PAIR = re.compile(r', (client|server|request|subrequest|upstream|host|referrer): ("[^"]*"|[^",]*)')
# --regex: what a named group holds, by its name (lower case); any other name is free text for the detectors.
_GROUP_ROLES = {name: role for role, names in {
    "address": ("host", "client", "client_ip", "clientip", "remote_addr", "remote_host", "remote_ip", "ip",
                "x_forwarded_for", "forwarded_for", "real_ip"),
    "request": ("request", "request_line"),
    "path": ("path", "uri", "url", "request_uri", "target"),
    "referrer": ("referrer", "referer", "http_referer"),
    "user_agent": ("user_agent", "useragent", "agent", "http_user_agent", "ua"),
    "server": ("vhost", "server", "server_name", "virtual_host"),
    "drop": ("port", "remote_port", "client_port", "user", "remote_user", "auth_user", "ident", "cookie",
             "authorization"),
}.items() for name in names}

# JSON log keys, lower-cased: nginx `escape=json` formats, Caddy, and privproxy's own schema.
ADDRESS_KEYS = frozenset({"client", "client_ip", "remote_addr", "remote_ip", "ip", "clientip", "x_forwarded_for",
                          "http_x_forwarded_for", "x-forwarded-for", "realip", "real_ip", "http_x_real_ip"})
URL_KEYS = frozenset({"path", "uri", "url", "request_uri", "request_url", "target"})
REQUEST_LINE_KEYS = frozenset({"request"})
REFERRER_KEYS = frozenset({"referrer", "referer", "http_referer", "http_referrer"})
AGENT_KEYS = frozenset({"user_agent", "http_user_agent", "user-agent", "useragent"})
# Values that are credentials or ports: never kept, whatever they hold.
DROP_KEYS = frozenset({"remote_port", "client_port", "port", "cookie", "http_cookie", "set-cookie", "set_cookie",
                       "authorization", "http_authorization", "proxy-authorization", "remote_user", "user",
                       "user_id", "sent_http_set_cookie"})


@dataclass(frozen=True)
class Layout:
    """A `--regex` layout: the expression, what each named group holds, the groups in the pattern's order."""

    pattern: re.Pattern[str]
    roles: dict[str, str]
    order: tuple[str, ...]


def compile_regex(text: str) -> Layout:
    """The operator's layout; ValueError says what is wrong with it."""
    try:
        rx = re.compile(text)
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from None
    if not rx.groupindex:
        raise ValueError("it names no group: write (?P<client>...), (?P<request>...), (?P<referrer>...)...")
    order = tuple(sorted(rx.groupindex, key=rx.groupindex.__getitem__))
    return Layout(rx, {n: _GROUP_ROLES.get(n.lower(), "text") for n in order}, order)


def _nginx_tail(text: str) -> list[tuple[str, str]] | None:
    """The fields nginx appends to an error (`, client: A, server: S, request: "..."`...), read to the end of
    the line, or None."""
    pairs = []
    pos = 0
    while pos < len(text):
        m = _NGINX_PAIR.match(text, pos)
        if m is None:
            return None
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
    return pairs if pairs and pairs[0][0] == "client" else None


@dataclass
class Stats:
    lines: int = 0
    written: int = 0
    unparsed: int = 0
    rules: Counter[str] = field(default_factory=Counter)  # rule id -> fields changed
    reasons: Counter[str] = field(default_factory=Counter)  # why lines were not written


class LogFilter:
    """One policy, one format; `line()` returns the filtered line or None (not written)."""

    def __init__(self, policy: Policy, fmt: str = "combined", cache_size: int = 65536, regex: str | None = None
                 ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
        if (fmt == "regex") != (regex is not None):
            raise ValueError("the regex format needs a pattern (--regex), and only it")
        self.policy = policy
        self.fmt = fmt
        self._stats = Stats()
        # The rule ids of each changed URL, counted into stats.rules in batches (Counter.update counts in C): a
        # Counter increment per rule per line was a tenth of the time of a line whose URLs are cached.
        self._tally: list[tuple[str, ...]] = []
        s = policy.scrubber.to("log")  # the proxy's access log is the same destination: same pseudonyms
        t = policy.truncation
        combined = fmt in ("combined", "vhost_combined")  # vhost_combined is a Combined line after `host:port`

        def host(h: str) -> str:
            return truncate.truncate_text(h, t) or "-"  # a host name, garbage: nothing that can identify

        def agent(a: str) -> str:
            out = generalize.user_agent(a)
            return _escape(out) if combined else out

        def free(v: str) -> tuple[str, tuple[str, ...]]:
            ch: list[Change] = []
            out = s.free("header", "extra", v, ch)
            return ("" if out is None else out), tuple(c.rule for c in ch)

        # Whole results are cached, with the ids of the rules that changed them: `hash` pseudonyms depend only
        # on (value, period), and check_period() empties the caches when the period changes during a long run.
        # Whole URLs first (referrers and popular pages repeat), then their pieces: paths and most parameters
        # repeat even when whole URLs do not. One dict per scope, keyed by the text alone, emptied when full:
        # most targets are new (a fresh click id each), and a miss costs a dict less than an LRU's bookkeeping.
        self._s = s
        self._size = cache_size
        self._quote = combined  # URLs are cached as the Combined field writes them
        self._whole: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {"path": {}, "referrer": {}}
        self._whole_path, self._whole_referrer = self._whole["path"], self._whole["referrer"]  # emptied, never replaced
        self._paths: dict[str, dict[str, tuple[str, bool, tuple[str, ...], bool]]] = {"path": {}, "referrer": {}}
        self._params: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {"path": {}, "referrer": {}}
        self._plans: dict[str, dict[str, tuple[str, str, str] | None]] = {"path": {}, "referrer": {}}
        self._host = lru_cache(maxsize=cache_size)(host)
        self._agent = lru_cache(maxsize=cache_size)(agent)
        self._crawler = False  # a JSON record's agent was a crawler's
        generalize.warm()  # before the workers are forked: each would compile ua-parser's regexes again
        self._free = lru_cache(maxsize=cache_size)(free)
        self._v4_24 = t.ipv4_prefix == 24
        self._pseudonym = s.pseudonymizer.pseudonym
        self._plain_prefix = quote_safe(s.pseudonymizer.settings.prefix) == s.pseudonymizer.settings.prefix
        self._not_combined = "not_vhost_combined" if fmt == "vhost_combined" else "not_combined"
        self._regex = compile_regex(regex) if regex is not None else None
        self._file_paths: dict[str, str] = {}
        self.line: Callable[[str], str | None] = {
            "combined": self._combined, "json": self._json, "vhost_combined": self._vhost_combined,
            "apache-error": self._apache_error, "nginx-error": self._nginx_error, "regex": self._regex_line}[fmt]
        self._period = policy.scrubber.pseudonymizer.period()
        self._default_site = policy.sites.default
        self._cut: dict[str, tuple[str, tuple[str, ...]]] = {}  # referrers cut to their origin -> record text
        # Set by _target when a URL holds identifier values: URLs with fresh values are not remembered whole,
        # so they neither cost a cache entry nor push out the URLs that do repeat.
        self._fresh = False
        allow = policy.logging.query_allowlist
        self._allowlist = allow.apply if allow.active else None  # logging.query_allowlist, when set
        self._referrer_kept = policy.referrer.external == policy.referrer.internal == "keep"  # _logged: no cut
        self._may_be_beacon = BeaconSieve(
            [p for p, _ in policy.sites.default.beacon_paths + policy.beacons.paths]
            + [p for codec in vendors.VENDORS.values() for p in codec.paths])

    @property
    def stats(self) -> Stats:
        if self._tally:
            self._count()
        return self._stats

    @stats.setter
    def stats(self, value: Stats) -> None:
        self._tally.clear()
        self._stats = value

    def _count(self) -> None:
        self._stats.rules.update(chain.from_iterable(self._tally))
        self._tally.clear()

    def _scrub_url(self, u: str, scope: str) -> str:
        got = self._whole[scope].get(u) or self._scrub_url_uncached(u, scope)
        if got[1]:
            self._tally.append(got[1])
        return got[0]

    def _scrub_url_uncached(self, u: str, scope: str) -> tuple[str, tuple[str, ...]]:
        """What the proxy's record holds for a target (scope "path") or a referrer, as this format writes it:
        Scrubber.url, through the fast path wherever that gives the same text (tests/unit/test_log_filter.py).
        Remembered in the scope's whole-URL cache."""
        self._fresh = False
        try:
            if self._allowlist is None and (scope == "path" or self._referrer_kept):
                out, rules = self._url(u, scope)
            else:
                out, rules = self._logged(u, scope)
        except Exception:  # noqa: BLE001 -- fail closed as pipeline.log_record does: nothing of it is written
            out, rules = ("[redacted]" if scope == "path" else ""), (f"failure:log_{scope}",)
        if self._quote and _needs_escape(out):
            out = quoted(record_text(out))
        got = out, rules
        if self._fresh:  # a click id, session id or visitor id: this URL will not come again
            return got
        cache = self._whole[scope]
        if len(cache) >= self._size:
            cache.clear()
        cache[u] = got
        return got

    def _logged(self, u: str, scope: str) -> tuple[str, tuple[str, ...]]:
        """_url, with what pipeline.log_record does around Scrubber.url: a referrer first cut to the level of
        `referrer:` (internal: a host of the default site, which `--site-host` adds to; a Combined line names no
        Host), and the query reduced to `logging.query_allowlist` after the rules."""
        lead: tuple[str, ...] = ()
        if scope == "referrer":
            kept = self.policy.referrer.reduce(u, self._default_site.matches)
            if kept != u:
                if not kept:
                    return "", ("referrer",)
                lead = ("referrer",)
                # An origin alone: the same few on every line (search engines), and nothing in it depends on the
                # pseudonym period (no path, no parameters), so it is scrubbed once.
                if "/" not in kept.partition("//")[2]:
                    got = self._cut.get(kept)
                    if got is None:
                        if len(self._cut) >= 4096:
                            self._cut.clear()
                        out, rules = self._url(kept, scope)
                        got = self._cut[kept] = out, lead + rules
                    return got
                u = kept
        out, rules = self._url(u, scope)
        if self._allowlist is None:
            return out, lead + rules if lead else rules
        out, dropped = self._allowlist(out)
        return out, lead + rules + ("query_allowlist",) * len(dropped)

    def _url(self, u: str, scope: str) -> tuple[str, tuple[str, ...]]:
        """(text, rule ids) as the proxy's record has them (pipeline.log_record): Scrubber.url of the target as
        the proxy read it, of a beacon's collection path alone, of the referrer; "-" for a target it refuses."""
        rules: list[str] = []
        got: str | None = None
        if scope == "path" and u:
            # A target the proxy refuses to read (target.parse: controls, `#`, bad percent-encoding, `..` above
            # the root, neither a path nor an http(s) URL) is recorded as "-" (pipeline.read_head).
            if _refused(u):
                return "-", _UNREADABLE_RULES
            if u[0] != "/":
                return self._other_form(u)
            got = self._target(u, scope, rules)  # `//x` too: a path in a request target (Scrubber.url)
        elif "#" not in u and u.startswith("/") and not u.startswith("//"):  # `//x` in a referrer names a host
            got = self._target(u, scope, rules)
        elif "#" not in u and scope != "path":
            m = _ABSOLUTE.match(u)  # user:password@ is left to Scrubber.url, which removes it
            if m is not None:
                got = self._target(m.group(2), scope, rules)
                if got is not None:
                    origin = m.group(1)
                    if origin[origin.index("//") + 2:origin.index("//") + 3] in _ADDRESS_START:
                        origin = split_origin(origin, self._s.truncation)[0]  # an address as the host: truncated
                    got = origin + got
        if got is _UNREADABLE:
            return "-", _UNREADABLE_RULES
        if got is not None:
            return got, tuple(rules)
        ch: list[Change] = []
        return self._s.url(u, scope, ch), tuple([c.rule for c in ch])

    def _other_form(self, u: str) -> tuple[str, tuple[str, ...]]:
        """A request target in absolute form (or `*`) as the proxy logs it: in the origin-form it reads and
        forwards (Target.raw, pipeline.read_head), by the rules of the site its authority names. "-" when the
        proxy answers 400 instead: a target it cannot read, an authority no host can be (user:password@ too)."""
        try:
            t = target.parse(u)
        except target.TargetError:
            return "-", _UNREADABLE_RULES
        site = self._default_site
        if t.authority:
            host = wire.canonical_host(t.authority)
            if host is None:
                return "-", _UNREADABLE_RULES
            site = self.policy.sites.for_host(host)  # the Host must name the same host (pipeline.read_head)
        if site is self._default_site and t.raw.startswith("/"):
            return self._url(t.raw, "path")  # the usual fast path, and its caches
        ch: list[Change] = []
        beacon = self._beacon_path(t.path, site)
        return self._s.url(t.raw if beacon is None else beacon, "path", ch), tuple([c.rule for c in ch])

    def _beacon_path(self, canonical: str, site: Site) -> str | None:
        """A beacon's collection path in the vendor's spelling, or None (pipeline.begin): the proxy logs a
        beacon's path without its query, the vendor's payload (pipeline.log_record)."""
        try:
            got = self.policy.beacons.match(canonical, site.beacon_paths)
        except vendors.AmbiguousPath:
            return None  # answered 400, and logged as read
        return None if got is None else got[1]

    def _target(self, u: str, scope: str, rules: list[str]) -> str | None:
        """Scrubber.url for a path with its query, piece by piece: the same text; _UNREADABLE for a request
        target whose path cannot be read; None when a copy of an identifier's value may stand in another
        parameter (an echo, which Scrubber.query replaces: Scrubber.url decides that URL).

        Parameters whose rule alone decides (drop, redact, hash) are done by name. Click ids, session tokens,
        phone numbers and visitor ids carry a new value on almost every line, so caching them by value would
        only churn the caches; the other parameters are cached whole."""
        path, sep, query = u.partition("?")
        paths = self._paths[scope]
        got = paths.get(path)
        if got is None:
            got = self._path(path, scope)
        out, generalized, ch, unreadable = got
        if ch:
            rules += ch
        if generalized:
            return _UNREADABLE if unreadable and scope == "path" else out
        if not sep:
            return out
        kept = []
        ids: list[str] | None = None  # identifier values Scrubber.query learns (fields.Echoes)
        own = 0  # kept parts that are those identifiers themselves: the echo search skips them
        plans = self._plans[scope]
        params = self._params[scope]
        for part in query.split("&"):
            if not part:
                continue
            name, eq, value = part.partition("=")
            plan = plans.get(name, _UNPLANNED)
            if plan is _UNPLANNED:
                plan = self._plan(scope, name)
            if plan is None:  # no rule, or one that does not treat the value as an identifier
                got = params.get(part)
                if got is None:
                    got = self._param(part, scope)
                after, ch = got
                if ch:
                    rules += ch
                if after:
                    kept.append(after)
                continue
            kind, rule, arg = plan
            # An identifier to Scrubber.query when its value, decoded, has ECHO_MIN characters or more: kept
            # as sent here, decoded only if the echo check runs (most lines have no other parameter to check).
            ident = len(value) >= ECHO_MIN and ("%" not in value or _decoded_long_enough(value))
            if ident:
                if ids is None:
                    ids = [value]
                else:
                    ids.append(value)
            if kind == "drop":
                rules.append(rule)
                continue
            if kind == "redact" and value[:1] != "[" and value[:3] not in ("%5B", "%5b"):  # not REDACTED itself
                rules.append(rule)
                kept.append(arg)
            elif kind == "hash" and value:
                rules.append(rule)
                kept.append(f"{name}={self._pseudonym(unquote_param(value), arg)}")
            else:
                got = params.get(part)
                if got is None:
                    got = self._param(part, scope)
                after, ch = got
                if ch:
                    rules += ch
                if not after:
                    continue
                kept.append(after)
            own += ident
        if ids is not None:
            self._fresh = True
            if len(kept) > own and _may_echo(ids, kept):
                return None
        return out + "?" + "&".join(kept) if kept else out

    def _path(self, path: str, scope: str) -> tuple[str, bool, tuple[str, ...], bool]:
        """Scrubber.path, cached: (text, generalized, rule ids, unreadable). Unreadable: the path raised
        target.TargetError (a nested URL in a `;param` can record the same rule, never with this result).
        The path of a request target that is a beacon's (on the default site: a Combined line names no Host)
        is its collection path, "generalized" too: the proxy logs no query for it."""
        ch: list[Change] = []
        beacon = None
        if scope == "path":
            try:
                canonical = path if target.plain(path) else target.parse(path).path
            except target.TargetError:
                canonical = ""  # Scrubber.path says so
            if canonical and self._may_be_beacon(canonical):
                beacon = self._beacon_path(canonical, self._default_site)
        if beacon is None:
            out, generalized = self._s.path(path, scope, ch)
        else:
            out, generalized = self._s.url(beacon, "path", ch), True
        rules = tuple([c.rule for c in ch]) if ch else ()
        got = (out, generalized, rules, generalized and out == REDACTED and _UNREADABLE_RULES[0] in rules)
        cache = self._paths[scope]
        if len(cache) >= self._size:
            cache.clear()
        cache[path] = got
        return got

    def _param(self, part: str, scope: str) -> tuple[str, tuple[str, ...]]:
        """Scrubber.query of one parameter, cached."""
        ch: list[Change] = []
        got = self._s.query(part, scope, ch), tuple(c.rule for c in ch)
        cache = self._params[scope]
        if len(cache) >= self._size:
            cache.clear()
        cache[part] = got
        return got

    def _plan(self, scope: str, raw_name: str) -> tuple[str, str, str] | None:
        """What a parameter's name says: None when no rule treats its value as an identifier (the part goes to
        the cache), else (action, rule id, argument), action "" when the value still matters.

        Drop and redact do not look at the value (except a value that is already the redaction mark); hash
        needs only the value. Every value under such a rule is an identifier to the echo check (Scrubber.query,
        fields.ECHO_ACTIONS), report-only rules included.
        """
        s = self._s
        name = unquote_param(raw_name)
        rule = s.rule_for("referrer" if scope == "referrer" else "query", name)
        plan: tuple[str, str, str] | None = None
        if rule is not None and rule.action in ECHO_ACTIONS:
            plan = ("", rule.id, "")
            if rule.report_only or s.report_only:
                pass
            elif rule.action == "drop":
                plan = ("drop", rule.id, "")
            elif rule.action == "redact":
                plan = ("redact", rule.id, f"{raw_name}={quote_safe(REDACTED)}")
            elif rule.action == "hash" and self._plain_prefix:
                plan = ("hash", rule.id, name)
        plans = self._plans[scope]
        if len(plans) >= 4096:  # names come from the log: bound what a flood of new names costs
            plans.clear()
        plans[raw_name] = plan
        return plan

    def _reject(self, reason: str) -> None:
        self._stats.unparsed += 1
        self._stats.reasons[reason] += 1

    # --- Combined / Common Log Format ------------------------------------------------------------------
    def _combined(self, raw: str) -> str | None:
        """One line of the Combined (or Common) Log Format, filtered; None when it does not parse."""
        out: list[str] = []
        self._combined_lines([raw], out, [], True)
        return out[0] if out else None

    def _combined_lines(self, lines: list[str], out: list[str], rejected: list[str], strip: bool) -> None:
        """Combined lines filtered into `out`, those that do not parse into `rejected` as they came; `strip`: the
        lines may end with CR or LF.

        The usual line, without escapes, is read by one expression (tests/unit/test_log_filter.py checks that it
        reads the fields the full one reads) and written here, in one loop per block with the lookups hoisted:
        filtering such a line is mostly the cost of the Python that handles it, and these are almost all lines."""
        usual = _USUAL.match
        whole_path, whole_referrer = self._whole_path, self._whole_referrer
        uncached, agents, hosts = self._scrub_url_uncached, self._agent, self._host
        tally = self._tally
        append = out.append
        v4_24 = self._v4_24
        fast = users = 0
        for line in lines:
            raw = line.rstrip("\r\n") if strip else line
            m = usual(raw) if "\\" not in raw else None
            if m is None:
                got = self._combined_regex(raw)
                if got is None:
                    rejected.append(line + "\n")
                else:
                    append(got)
                continue
            a, b, h, user, when, method, target, proto, status, size, ref, agent = m.groups()
            got = whole_path.get(target) or uncached(target, "path")
            if got[1]:
                tally.append(got[1])
            if user != "-":
                users += 1
            # Most hosts are dotted quads under the default /24: masked by concatenation, without a cache entry.
            if a is None:
                h = hosts(h)
            elif v4_24:
                h = a + "0"
            else:
                h = hosts(a + b)
            # as the proxy's Combined writer has them (escaped in the caches): "-" when empty
            if ref and ref != "-":
                ref_got = whole_referrer.get(ref) or uncached(ref, "referrer")
                if ref_got[1]:
                    tally.append(ref_got[1])
                ref = ref_got[0] or "-"
            else:
                ref = "-"
            agent = (agents(agent) or "-" if agent != "-" else agent) if agent else "-"
            fast += 1
            append(f'{h} - - [{when}] "{method} {got[0]} {proto}" {status} {size} "{ref}" "{agent}"\n')
        st = self._stats
        st.lines += fast
        st.written += fast
        if users:
            st.rules["remote_user"] += users
        if len(tally) > 4096:
            self._count()

    def _combined_regex(self, raw: str) -> str | None:
        m = COMBINED.match(raw)
        if m is None:
            self._stats.lines += 1
            self._reject(self._not_combined)
            return None
        h, _ident, user, when, request, status, size, ref, agent, rest = m.groups()
        # The request too: the target nginx logs as `/a\x5C..\x5Chealth` is the `/a\..\health` the server read.
        request = _unescape(request)
        if ref is not None:
            ref, agent = _unescape(ref), _unescape(agent)
        return self._fields(h, user, when, request, request_line(request), status, size, ref, agent, rest)

    def _fields(self, h: str, user: str, when: str, request: str, rq: Sequence[str] | None, status: str, size: str,
                ref: str | None, agent: str | None, rest: str) -> str:
        if rq is not None:
            method, target, proto = rq
            request = f"{method} {self._scrub_url(target, 'path')} {proto}"  # method, proto: nothing to escape
        elif request not in ("", "-"):
            request = "-"  # a TLS handshake on a plain port, garbage, a truncated line: nothing in it is safe
            self._stats.rules["unparsed_request"] += 1
        if user != "-":
            self._stats.rules["remote_user"] += 1
        # Most hosts are dotted quads under the default /24: masked by slicing, without a cache entry each.
        m = _QUAD.fullmatch(h) if self._v4_24 else None
        host = h[:m.end(3)] + ".0" if m is not None else self._host(h)
        if ref is None or agent is None:
            out = f'{host} - - [{when}] "{request}" {status} {size}'
        else:
            # as the proxy's Combined writer has them (escaped in the caches): "-" when empty
            ref_out = (self._scrub_url(ref, "referrer") if ref != "-" else ref) if ref else "-"
            agent_out = (self._agent(agent) if agent != "-" else agent) if agent else "-"
            out = f'{host} - - [{when}] "{request}" {status} {size} "{ref_out or "-"}" "{agent_out or "-"}"'
        if rest and not rest.isspace():
            scrubbed, rules = self._free(rest)
            if rules:
                self._tally.append(rules)
            out += scrubbed
        st = self._stats
        st.lines += 1
        st.written += 1
        if len(self._tally) > 4096:
            self._count()
        return out + "\n"

    # --- Apache vhost_combined, Apache and nginx error logs, a layout named by a regular expression ----------
    def _vhost_combined(self, raw: str) -> str | None:
        """`%v:%p` and a Combined line: the virtual host kept when it is a host name (an address is truncated),
        the rest filtered as Combined."""
        head, sep, rest = raw.partition(" ")
        if not sep or not head:
            self._stats.lines += 1
            self._reject("not_vhost_combined")
            return None
        out = self._combined(rest)
        return None if out is None else f"{self._server(head)} {out}"

    def _server(self, v: str) -> str:
        """A server name, `name:port` or a Host: a host name is kept (lower case), an address truncated, anything
        else `-`."""
        name, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or (":" in name and not name.endswith("]")):
            name, port = v, ""
        if _HOST_NAME.fullmatch(name) is not None and not name.replace(".", "").isdigit():
            out = name.lower()
        else:
            masked = truncate.truncate_text(name, self.policy.truncation)
            if masked is None:
                self._stats.rules["unreadable_host"] += 1
                return "-"
            out = f"[{masked}]" if ":" in masked else masked
        return out + (":" + port if port else "")

    def _address(self, v: str) -> str:
        """A client address with or without its port (Apache writes an IPv6 one as `2001:db8::7:5678`): truncated,
        the port dropped; `-` for anything that is no address (nothing of it is kept)."""
        t = self.policy.truncation
        masked = truncate.truncate_text(v, t)
        if masked is None and ":" in v:
            masked = truncate.truncate_text(v.rpartition(":")[0], t)
        if masked is None:
            self._stats.rules["unreadable_address"] += 1
            return "-"
        return masked

    def _gap(self, text: str) -> str:
        """Free text between the fields a layout names: addresses, e-mails, phone numbers... by the detectors."""
        if not text or text.isspace():
            return text
        out, rules = self._free(text)
        if rules:
            self._tally.append(rules)
        return out

    def _message(self, text: str, escaped: bool) -> str:
        """An error message: request lines and URLs through the URL rules, file paths as paths (a document
        root followed by the request path), the text around them through the detectors. `escaped`: Apache's
        `\\xHH` escapes, read back before the URL rules see a target. A login name and credential header values
        quoted in it are removed first, as an access log's remote_user and Cookie are."""
        if "user" in text or "ookie" in text or "uthorization" in text:
            cleaned = _CREDENTIAL_TEXT.sub(r"\1\2[redacted]", _LOGIN_USER.sub(_no_user, text))
            if cleaned != text:
                self._stats.rules["remote_user"] += 1
                text = cleaned
        out = []
        last = 0
        for m in _MESSAGE_TOKEN.finditer(text):
            token = m.group(0)
            if m.group(1) is not None:  # a request line
                target = _unescape(m.group(2)) if escaped else m.group(2)
                got = f"{m.group(1)} {self._scrub_url(target, 'path')} {m.group(3)}"
                end = m.end()
            else:
                stripped = token.rstrip(".,;:)]}'")
                end = m.start() + len(stripped)
                if m.group(4) is not None:  # an absolute URL
                    got = self._scrub_url(_unescape(stripped) if escaped else stripped, "referrer")
                else:
                    got = self._file_path(stripped)
            out.append(self._gap(text[last:m.start()]))
            out.append(got)
            last = end
        out.append(self._gap(text[last:]))
        return "".join(out)

    def _file_path(self, p: str) -> str:
        """A file path that may end with a request's path (`/usr/share/nginx/html/health/x`): the longest suffix
        the path rules change is replaced by what they make of it; with a query, the URL rules. Cached."""
        got = self._file_paths.get(p)
        if got is not None:
            return got
        if "?" in p or "#" in p:
            got = self._scrub_url(p, "path")
        else:
            got = p
            starts = [i for i, c in enumerate(p) if c == "/"] or [0]
            for i in starts[:32]:
                ch: list[Change] = []
                after, _ = self._s.path(p[i:], "path", ch)
                if after != p[i:]:
                    got = p[:i] + after
                    self._tally.append(tuple(c.rule for c in ch))
                    break
        if len(self._file_paths) >= self._size:
            self._file_paths.clear()
        self._file_paths[p] = got
        return got

    def _done(self, out: str) -> str:
        st = self._stats
        st.written += 1
        if len(self._tally) > 4096:
            self._count()
        # one record, one line, whatever a decoded value held
        return (out.replace("\r", "\\r").replace("\n", "\\n") if "\n" in out or "\r" in out else out) + "\n"

    def _apache_error(self, raw: str) -> str | None:
        """Apache's error log (2.2 and 2.4 ErrorLogFormat): `[time] [module:level] [pid P:tid T] [client A:P]
        message, referer: URL`. The client and `[remote A:P]` addresses truncated, ports dropped."""
        raw = raw.rstrip("\r\n")
        self._stats.lines += 1
        m = _APACHE_TIME.match(raw)
        if m is None:
            self._reject("not_apache_error")
            return None
        out = [m.group(0)]
        pos = m.end()
        while raw.startswith(" [", pos) and len(out) < 8:
            end = raw.find("]", pos + 2)
            if end < 0:
                break
            inner = raw[pos + 2:end]
            kind, sp, value = inner.partition(" ")
            if kind in ("client", "remote") and sp:
                inner = f"{kind} {self._address(value)}"
            elif _APACHE_TAG.fullmatch(inner) is None:
                inner = self._gap(inner)
            out.append(f" [{inner}]")
            pos = end + 1
        message = raw[pos:]
        message, sep, ref = message.rpartition(", referer: ")
        if not sep:
            message, ref = ref, ""
        out.append(self._message(message, escaped=True))
        if sep:
            ref = _unescape(ref)
            out.append(", referer: " + ((self._scrub_url(ref, "referrer") or "-") if ref not in ("", "-") else ref))
        return self._done("".join(out))

    def _nginx_error(self, raw: str) -> str | None:
        """nginx's error log: `YYYY/MM/DD HH:MM:SS [level] PID#TID: *CID message, client: A, server: S,
        request: "...", upstream: "...", host: "...", referrer: "..."`. The fields nginx appends are read only
        when they run to the end of the line as nginx writes them; otherwise the whole message is free text."""
        raw = raw.rstrip("\r\n")
        self._stats.lines += 1
        m = _NGINX_ERROR.match(raw)
        if m is None:
            self._reject("not_nginx_error")
            return None
        head, message = m.group(1), m.group(2)
        tail: list[tuple[str, str]] | None = None
        at = message.find(", client: ")
        while at >= 0:
            tail = _nginx_tail(message[at:])
            if tail is not None:
                message = message[:at]
                break
            at = message.find(", client: ", at + 1)
        out = [head, self._message(message, escaped=False)]
        for key, value in tail or ():
            quoted_value = value.startswith('"')
            v = value[1:-1] if quoted_value else value
            if key == "client":
                v = self._address(v)
            elif key in ("server", "host"):
                v = self._server(v) if v else v
            elif key == "request":
                rq = request_line(v)
                v = f"{rq[0]} {self._scrub_url(rq[1], 'path')} {rq[2]}" if rq is not None else "-"
            elif key == "subrequest":
                v = self._scrub_url(v, "path")
            elif v not in ("", "-"):  # upstream, referrer: URLs
                v = self._scrub_url(v, "referrer") or "-"
            out.append(f', {key}: "{v}"' if quoted_value else f", {key}: {v}")
        return self._done("".join(out))

    def _regex_line(self, raw: str) -> str | None:
        """A line of the operator's own layout (`--regex` with named groups): each group by what its name says
        (_GROUP_ROLES), every other character of the line through the detectors; a line it does not match is
        not written."""
        raw = raw.rstrip("\r\n")
        self._stats.lines += 1
        rx = self._regex
        assert rx is not None
        m = rx.pattern.search(raw)
        if m is None:
            self._reject("not_matching_regex")
            return None
        out = []
        last = 0
        for name in rx.order:
            start, end = m.span(name)
            if start < last:  # did not take part, or inside a group already written
                continue
            out.append(self._gap(raw[last:start]))
            out.append(self._group(rx.roles[name], m.group(name)))
            last = end
        out.append(self._gap(raw[last:]))
        return self._done("".join(out))

    def _group(self, role: str, v: str) -> str:
        if v in ("", "-"):
            return v
        if role == "address":
            return ", ".join(self._address(p.strip()) for p in v.split(","))
        if role == "request":
            rq = request_line(v)
            return f"{rq[0]} {self._scrub_url(rq[1], 'path')} {rq[2]}" if rq is not None else "-"
        if role == "path":
            return self._scrub_url(v, "path")
        if role == "referrer":
            return self._scrub_url(v, "referrer") or "-"
        if role == "user_agent":
            return self._agent(v) or "-"
        if role == "server":
            return self._server(v)
        if role == "drop":
            self._stats.rules["dropped_field"] += 1
            return "-"
        return self._gap(v)

    # --- JSON lines ---------------------------------------------------------------------------------------
    def _json(self, raw: str) -> str | None:
        self._stats.lines += 1
        if len(self._tally) > 4096:
            self._count()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._reject("invalid_json")
            return None
        if not isinstance(doc, dict):
            self._reject("not_an_object")
            return None
        self._crawler = False
        try:
            out = self._walk(doc, 0)
        except RecursionError:
            self._reject("too_deep")
            return None
        if self._crawler:
            out["bot"] = True  # as the proxy's records mark a crawler (Caddy's agent sits in request.headers)
        self._stats.written += 1
        return one_line(orjson.dumps(out)).decode()  # U+2028, U+2029, NEL escaped as the proxy's records

    def _walk(self, value: Any, depth: int, key: str = "") -> Any:
        if depth > 32:
            raise RecursionError
        k = key.lower()
        if isinstance(value, dict):
            return {kk: self._walk(v, depth + 1, kk) for kk, v in value.items() if kk.lower() not in DROP_KEYS}
        if isinstance(value, list):
            return [self._walk(v, depth + 1, key) for v in value]
        if not isinstance(value, str):
            return value
        if k in ADDRESS_KEYS:
            return ", ".join(self._host(p.strip()) for p in value.split(",")) if value else value
        if k in URL_KEYS:
            return self._scrub_url(value, "path")
        if k in REQUEST_LINE_KEYS:
            rq = request_line(value)
            return f"{rq[0]} {self._scrub_url(rq[1], 'path')} {rq[2]}" if rq else "-"
        if k in REFERRER_KEYS:
            return self._scrub_url(value, "referrer") if value not in ("", "-") else value
        if k in AGENT_KEYS:
            if value and generalize.agent(value).bot:
                self._crawler = True
            return self._agent(value) if value else value
        scrubbed, rules = self._free(value)
        if rules:
            self._tally.append(rules)
        return scrubbed

    def check_period(self) -> None:
        """Forget cached pseudonyms when the pseudonymization period changes."""
        period = self.policy.scrubber.pseudonymizer.period()
        if period != self._period:
            self._period = period
            self._free.cache_clear()
            for caches in (self._whole, self._paths, self._params):
                for cache in caches.values():
                    cache.clear()


class BeaconSieve:
    """True for every canonical path beacons.Settings.match finds a vendor for, with these patterns; False for
    most others, in a fraction of match's cost (a new path on most lines costs filter-log 2 us in match).

    Sound by match's own rules (vendors.path_matches, codec_for_path): both sides case-folded, trailing slashes
    dropped. An exact pattern's path ends in the pattern's last segment; a path `*S` matches ends in the last
    segment of S (or the whole path's last segment ends with S, when S has no `/`); `P*` is tried as match tries
    it. tests/unit/test_log_filter.py holds the sieve against match."""

    def __init__(self, patterns: Iterable[str]) -> None:
        last: set[str] = set()
        ends: list[str] = []
        starts: list[str] = []
        for p in patterns:
            if p.endswith("*"):
                starts.append(p[:-1].lower())
            elif p.startswith("*"):
                ends.append(_key_segment(p[1:]))
            else:
                last.add(_key_segment(p))
        self.last, self.ends, self.starts = frozenset(last), tuple(ends), tuple(starts)

    def __call__(self, path: str) -> bool:
        low = path.lower()
        if low.startswith(self.starts):
            return True
        last = _key_segment(low)
        return last in self.last or last.endswith(self.ends)


def _key_segment(path: str) -> str:
    """The last segment of vendors' match key (lower case, no trailing slash, "/" at least)."""
    key = path.lower().rstrip("/") or "/"
    return key[key.rfind("/") + 1:]


# Messages naming the user a login was tried for: Apache's mod_auth_basic/authn (`user jane not found`, `user
# jane: authentication failure`), nginx's auth_basic (`user "jane" was not found`, `user "jane": password
# mismatch`). The name is personal data; it goes as an access log's remote_user goes.
_LOGIN_USER = re.compile(r'\buser (?:"[^"]*"|[^\s:",]+)')
# A Cookie or Authorization header quoted in a message (ModSecurity, a module's debug line): to the end of it.
_CREDENTIAL_TEXT = re.compile(r"\b((?:set-)?cookie|(?:proxy-)?authorization)(\s*[:=]\s*)\S.*", re.I | re.S)


def _no_user(m: re.Match[str]) -> str:
    return 'user "-"' if m.group(0)[5:6] == '"' else "user -"


def request_line(text: str) -> list[str] | tuple[str, ...] | None:
    """[method, target, protocol] of a request line as _REQUEST reads it, or None. The usual line is checked
    without the expression, by set and str methods that accept only what it accepts."""
    rq = text.split(" ")
    if len(rq) == 3 and rq[0] in _METHODS and rq[2] in _PROTOCOLS and rq[1] and rq[1].isascii() \
            and rq[1].isprintable():
        return rq
    m = _REQUEST.match(text)
    return m.groups() if m is not None else None


def _decoded_long_enough(raw: str) -> bool:
    """len(unquote_param(raw)) >= ECHO_MIN, mostly without decoding: each `%XX` is one byte, four bytes at
    least one character, everything else one character each."""
    k = raw.count("%")
    return len(raw) - 3 * k + (k + 3) // 4 >= ECHO_MIN or len(unquote_param(raw)) >= ECHO_MIN


def _may_echo(ids: list[str], kept: list[str]) -> bool:
    """False when Scrubber.query's echo search cannot find any of the identifiers (values as sent) in the
    scrubbed parameters.

    A superset of that search, cheap enough to run on every URL that needs it: Echoes looks for each value,
    decoded and in lower case, in each other part's name and value lower-cased and decoded once to four times
    (unquote_param, then fields._decodings). Decoding is local to each `%XX` and `+`, and `&`/`=` are never part
    of one, so the parts joined and decoded as one text hold every such form. True costs only the slow path.
    """
    text = "&".join(kept)
    forms = [text.lower()]
    for _ in range(4):
        if "%" not in text and "+" not in text:
            break
        decoded = unquote_plus(text, errors="replace")
        if decoded == text:
            break
        text = decoded
        forms.append(text.lower())
    return any(v in form for v in (unquote_param(i).lower() for i in ids) for form in forms)


_ESCAPED = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+|\\(.)", re.S)
_APACHE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "v": "\v"}


def _unescape(v: str) -> str:
    r"""A quoted field as the server read it: nginx writes `"`, `\`, controls and bytes above 0x7E as \xHH,
    Apache writes \" \\ \n \t... A run of \xHH is bytes, read as UTF-8 (bytes that are not stay as surrogate
    escapes, as mitmproxy keeps them, and are written as %XX like the proxy's records: formats.text)."""
    if "\\" not in v:
        return v
    return _ESCAPED.sub(lambda m: _APACHE.get(m.group(1), m.group(1)) if m.group(1) is not None else
                        bytes.fromhex(m.group(0).replace("\\x", "")).decode("utf-8", "surrogateescape"), v)


# What the proxy's Combined writer escapes in a quoted field (access_log.formats.quoted): quotes, backslashes,
# C0 and C1 controls, DEL and the Unicode line separators, so that a record is one line to every reader.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')


def _refused(u: str) -> bool:
    """_REFUSED.search(u) is not None; in printable ASCII that is a space or '#', which substring tests find
    faster than the search."""
    if u.isascii() and u.isprintable():
        return " " in u or "#" in u
    return _REFUSED.search(u) is not None


def _needs_escape(v: str) -> bool:
    """_NEEDS_ESCAPE.search(v) is not None. In printable ASCII only a quote or a backslash is escaped: four C
    string methods answer for almost every URL in less time than the search."""
    if v.isascii() and v.isprintable():
        return '"' in v or "\\" in v
    return _NEEDS_ESCAPE.search(v) is not None


def _escape(v: str) -> str:
    """A quoted field written as the proxy writes it: the same escapes, "-" when empty."""
    if v and not _needs_escape(v):
        return v
    return quoted(record_text(v))


def blocks(stream: BinaryIO, size: int = BLOCK) -> Iterator[bytes]:
    """The stream in blocks of whole lines (a block ends with a newline, except perhaps the last).

    Reading megabytes at a time and splitting in C is what makes the per-line loop the only cost. A line
    longer than MAX_LINE is cut; its pieces do not parse, so they are rejected like any garbage.
    """
    rest = b""
    read = getattr(stream, "read1", stream.read)  # what is there now, up to size: a pipe never waits for more
    while True:
        data = read(size)
        if not data:
            break
        if rest:
            data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < MAX_LINE:
            rest = data
            continue
        if cut == 0:
            cut = len(data)
        yield data[:cut]
        rest = data[cut:]
    if rest:
        yield rest


def spans(fd: int, start: int, size: int = BLOCK) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of blocks of whole lines in a regular file, from `start` to its end: the lines blocks()
    reads, for workers that read their block themselves (os.pread) instead of receiving it through a pipe.

    A block ends after the first newline at or after `size` bytes, or at the end of the file; a line longer than
    MAX_LINE is cut, as blocks() cuts it. A file that grows while it is read is read to its new end, and a line
    is never cut where a writer has not finished it yet: the end of the file counts only when it stays put."""
    pos = start
    while (length := os.fstat(fd).st_size) > pos:
        end = probe = pos + size - 1
        while True:
            if probe >= length:
                grown = os.fstat(fd).st_size
                if grown > length:  # a writer is appending: the line may go on
                    length = grown
                    continue
                end = length  # the last block: to the end of the file
                break
            chunk = os.pread(fd, 1 << 16, probe)
            i = chunk.find(b"\n")
            if i >= 0:
                end = probe + i + 1
                break
            probe += len(chunk)
            if not chunk or probe - end >= MAX_LINE:
                end = probe
                break
        yield pos, end
        pos = end


def filter_block(f: LogFilter, data: bytes) -> tuple[bytes, list[str]]:
    """(filtered lines, rejected lines) for a block of whole lines.

    Undecodable bytes become U+FFFD and cannot hide an identifier; a newline is never part of a multi-byte
    sequence, so decoding the block at once is the same as decoding line by line.
    """
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    out: list[str] = []
    rejected: list[str] = []
    if f.fmt == "combined":
        f._combined_lines(lines, out, rejected, "\r" in text)  # CRLF line ends: what _combined strips
        return "".join(out).encode("utf-8"), rejected
    line = f.line
    for raw in lines:
        r = line(raw)
        if r is None:
            rejected.append(raw + "\n")
        else:
            out.append(r)
    return "".join(out).encode("utf-8"), rejected


# --- parallel filtering: mitmproxy-free worker processes, one block at a time, output in input order ---------
_worker: LogFilter | None = None
_input = -1  # the log file's descriptor, inherited: a block is read by the worker that filters it


def _init_worker(policy: Policy, fmt: str, regex: str | None, fd: int) -> None:
    global _worker, _input
    _worker = LogFilter(policy, fmt, regex=regex)
    _input = fd
    quiet_gc()


def _filter_in_worker(span: tuple[int, int]) -> tuple[bytes, list[str], Stats]:
    assert _worker is not None
    start, end = span
    data = os.pread(_input, end - start, start)  # read here, so the block never crosses a pipe
    _worker.stats = Stats()
    _worker.check_period()
    out, rejected = filter_block(_worker, data)
    return out, rejected, _worker.stats


def quiet_gc() -> None:
    """Filtering allocates millions of short-lived, acyclic objects next to big caches: the cyclic collector
    would rescan the caches over and over for nothing (about a tenth of the run). Reference counting still
    frees everything; the caches are bounded."""
    gc.freeze()
    gc.disable()


def merge(total: Stats, part: Stats) -> None:
    total.lines += part.lines
    total.written += part.written
    total.unparsed += part.unparsed
    total.rules.update(part.rules)
    total.reasons.update(part.reasons)


def run_parallel(policy: Policy, fmt: str, fd: int, source: Iterable[tuple[int, int]], workers: int,
                 regex: str | None = None) -> Iterator[tuple[bytes, list[str], Stats]]:
    """Filtered blocks in input order, at most two blocks per worker in flight (memory stays bounded however
    long the log). `source`: spans() of the regular file open as `fd`, which the workers read themselves (the
    parent neither copies nor pickles the log: its CPU would be taken from the workers'). Workers are forked,
    so they share the parent's pseudonymization secret (an ephemeral one included) and compute the same
    pseudonyms."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(policy, fmt, regex, fd)) as pool:
        pending: deque = deque()
        for span in source:
            pending.append(pool.apply_async(_filter_in_worker, (span,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
