"""The offline log filter: existing nginx/Apache/Caddy logs through the same rules as live traffic (C2, C9, C11).

A target and a referrer come out as the proxy's own record has them (pipeline.log_record: Scrubber.url for the
"log" destination, "-" for a target it refuses); the fast path that does most URLs piece by piece is held to that
by a property test. Fail closed: a line that cannot be parsed is never written out as it came; it is dropped (or
quarantined when the operator asks) and counted. Log lines repeat the same URLs, referrers and agents over and
over, so each of those is scrubbed once and remembered (bounded caches).
"""

from __future__ import annotations

import gc
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, BinaryIO
from urllib.parse import quote, unquote_plus

import orjson

from privproxy import generalize, target, truncate, vendors, wire
from privproxy.access_log.formats import one_line, quoted
from privproxy.access_log.formats import text as record_text
from privproxy.fields import ECHO_ACTIONS, ECHO_MIN, REDACTED
from privproxy.policy import Policy
from privproxy.scrub import SAFE, Change, split_origin, unquote_param
from privproxy.sites import Site
from privproxy.truncate import QUAD as _QUAD

FORMATS = ("combined", "json")
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
_USUAL = re.compile(r'([^\s"]++) [^\s"]++ ([^\s"]++) \[([^\]"]*+)\] "([A-Z][A-Z0-9_-]{0,19}) ([^\s"]++) '
                    r'(HTTP/\d(?:\.\d)?)" (\d{3}|-) (\d++|-) "([^"]*+)" "([^"]*+)"\Z')
_ADDRESS_START = frozenset("0123456789[")  # a host that may be an address (split_origin decides)
_ABSOLUTE = re.compile(r"^(https?://[^/?#\s@]*)(/.*)$", re.S | re.I)  # no user:password@: Scrubber.url
_REFUSED = target.BAD_CHAR  # characters the proxy refuses in a request target (target.parse)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})  # all match _REQUEST's
_PROTOCOLS = frozenset({"HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/2", "HTTP/3"})  # and so do these
_REQUEST = re.compile(r"^([A-Z][A-Z0-9_-]{0,19}) (\S+) (HTTP/\d(?:\.\d)?)$")

# JSON log keys, lower-cased: nginx `escape=json` formats, Caddy, and privproxy's own schema.
ADDRESS_KEYS = frozenset({"client", "client_ip", "remote_addr", "remote_ip", "ip", "clientip", "x_forwarded_for",
                          "http_x_forwarded_for", "x-forwarded-for", "realip", "real_ip", "http_x_real_ip"})
URL_KEYS = frozenset({"path", "uri", "url", "request_uri", "request_url", "target"})
REQUEST_LINE_KEYS = frozenset({"request"})
REFERRER_KEYS = frozenset({"referrer", "referer", "http_referer", "http_referrer"})
AGENT_KEYS = frozenset({"user_agent", "http_user_agent", "user-agent", "useragent"})
_OCTETS = frozenset(str(i) for i in range(256))  # what truncate.QUAD reads as an octet: no leading zeros, ASCII
# Values that are credentials or ports: never kept, whatever they hold.
DROP_KEYS = frozenset({"remote_port", "client_port", "port", "cookie", "http_cookie", "set-cookie", "set_cookie",
                       "authorization", "http_authorization", "proxy-authorization", "remote_user", "user",
                       "user_id", "sent_http_set_cookie"})


@dataclass
class Stats:
    lines: int = 0
    written: int = 0
    unparsed: int = 0
    rules: Counter[str] = field(default_factory=Counter)  # rule id -> fields changed
    reasons: Counter[str] = field(default_factory=Counter)  # why lines were not written


class LogFilter:
    """One policy, one format; `line()` returns the filtered line or None (not written)."""

    def __init__(self, policy: Policy, fmt: str = "combined", cache_size: int = 65536) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
        self.policy = policy
        self.fmt = fmt
        self._stats = Stats()
        # The rule ids of each changed URL, counted into stats.rules in batches (Counter.update counts in C): a
        # Counter increment per rule per line was a tenth of the time of a line whose URLs are cached.
        self._tally: list[tuple[str, ...]] = []
        s = policy.scrubber.to("log")  # the proxy's access log is the same destination: same pseudonyms
        t = policy.truncation
        combined = fmt == "combined"

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
        self._free = lru_cache(maxsize=cache_size)(free)
        self._v4_24 = t.ipv4_prefix == 24
        self._pseudonym = s.pseudonymizer.pseudonym
        self._plain_prefix = quote(s.pseudonymizer.settings.prefix, safe=SAFE) == s.pseudonymizer.settings.prefix
        self.line: Callable[[str], str | None] = self._combined if combined else self._json
        self._period = policy.scrubber.pseudonymizer.period()
        self._default_site = policy.sites.default
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
        Scrubber.url, through the fast path wherever that gives the same text (tests/unit/test_offline.py).
        Remembered in the scope's whole-URL cache."""
        try:
            out, rules = self._url(u, scope)
        except Exception:  # noqa: BLE001 -- fail closed as pipeline.log_record does: nothing of it is written
            out, rules = ("[redacted]" if scope == "path" else ""), (f"failure:log_{scope}",)
        if self._quote and _NEEDS_ESCAPE.search(out) is not None:
            out = quoted(record_text(out))
        cache = self._whole[scope]
        if len(cache) >= self._size:
            cache.clear()
        got = cache[u] = out, rules
        return got

    def _url(self, u: str, scope: str) -> tuple[str, tuple[str, ...]]:
        """(text, rule ids) as the proxy's record has them (pipeline.log_record): Scrubber.url of the target as
        the proxy read it, of a beacon's collection path alone, of the referrer; "-" for a target it refuses."""
        rules: list[str] = []
        got: str | None = None
        if scope == "path" and u:
            # A target the proxy refuses to read (target.parse: controls, `#`, bad percent-encoding, `..` above
            # the root, neither a path nor an http(s) URL) is recorded as "-" (pipeline.read_head).
            if _REFUSED.search(u) is not None:
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
        if ids is not None and len(kept) > own and _may_echo(ids, kept):
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
        rules = tuple(c.rule for c in ch)
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
                plan = ("redact", rule.id, f"{raw_name}={quote(REDACTED, safe=SAFE)}")
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
        raw = raw.rstrip("\r\n")
        if "\\" not in raw:
            # The usual line, without escapes, in one expression (tests/unit/test_offline.py checks that it reads
            # the fields the full one reads), and written here without a call per field: filtering such a line
            # is mostly the cost of the Python that handles it, and these lines are almost all lines.
            m = _USUAL.match(raw)
            if m is not None:
                h, user, when, method, target, proto, status, size, ref, agent = m.groups()
                tally = self._tally
                got = self._whole_path.get(target) or self._scrub_url_uncached(target, "path")
                if got[1]:
                    tally.append(got[1])
                if user != "-":
                    self._stats.rules["remote_user"] += 1
                # Most hosts are dotted quads under the default /24: masked by slicing, without a cache entry.
                quad = h.split(".")
                if len(quad) == 4 and self._v4_24 and quad[0] in _OCTETS and quad[1] in _OCTETS \
                        and quad[2] in _OCTETS and quad[3] in _OCTETS:
                    h = h[:len(h) - len(quad[3])] + "0"
                else:
                    h = self._host(h)
                # as the proxy's Combined writer has them (escaped in the caches): "-" when empty
                if ref and ref != "-":
                    ref_got = self._whole_referrer.get(ref) or self._scrub_url_uncached(ref, "referrer")
                    if ref_got[1]:
                        tally.append(ref_got[1])
                    ref = ref_got[0] or "-"
                else:
                    ref = "-"
                agent = (self._agent(agent) or "-" if agent != "-" else agent) if agent else "-"
                st = self._stats
                st.lines += 1
                st.written += 1
                if len(tally) > 4096:
                    self._count()
                return f'{h} - - [{when}] "{method} {got[0]} {proto}" {status} {size} "{ref}" "{agent}"\n'
        return self._combined_regex(raw)

    def _combined_regex(self, raw: str) -> str | None:
        m = COMBINED.match(raw)
        if m is None:
            self._stats.lines += 1
            self._reject("not_combined")
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
        try:
            out = self._walk(doc, 0)
        except RecursionError:
            self._reject("too_deep")
            return None
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
    it. tests/unit/test_offline.py holds the sieve against match."""

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


def _escape(v: str) -> str:
    """A quoted field written as the proxy writes it: the same escapes, "-" when empty."""
    if v and _NEEDS_ESCAPE.search(v) is None:
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


def _init_worker(policy: Policy, fmt: str) -> None:
    global _worker
    _worker = LogFilter(policy, fmt)
    quiet_gc()


def _filter_in_worker(data: bytes) -> tuple[bytes, list[str], Stats]:
    assert _worker is not None
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


def run_parallel(policy: Policy, fmt: str, source: Iterable[bytes], workers: int
                 ) -> Iterator[tuple[bytes, list[str], Stats]]:
    """Filtered blocks in input order, at most two blocks per worker in flight (memory stays bounded however
    long the log). Workers are forked, so they share the parent's pseudonymization secret (an ephemeral one
    included) and compute the same pseudonyms."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(policy, fmt)) as pool:
        pending: deque = deque()
        for data in source:
            pending.append(pool.apply_async(_filter_in_worker, (data,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
