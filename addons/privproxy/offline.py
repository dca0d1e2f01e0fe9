"""The offline log filter: existing nginx/Apache/Caddy logs through the same rules as live traffic (C2, C9, C11).

Fail closed: a line that cannot be parsed is never written out as it came; it is dropped (or quarantined
when the operator asks) and counted. Log lines repeat the same URLs, referrers and agents over and over, so
each of those is scrubbed once and remembered (bounded caches).
"""

from __future__ import annotations

import gc
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, BinaryIO
from urllib.parse import quote

import orjson

from privproxy import generalize, truncate
from privproxy.policy import Policy
from privproxy.fields import REDACTED
from privproxy.scrub import SAFE, Change, unquote_param
from privproxy.truncate import QUAD as _QUAD

FORMATS = ("combined", "json")
_UNPLANNED = object()
BLOCK = 1 << 20  # bytes read and handed to a worker at a time
MAX_LINE = 1 << 24

# host ident authuser [time] "request" status bytes ["referer" "user-agent"] [anything nginx appends]
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled: one step per run of plain characters
COMBINED = re.compile(
    rf'^(\S+) (\S+) (\S+) \[([^\]]*)\] {_Q} (\d{{3}}|-) (\d+|-)(?: {_Q} {_Q})?(.*)$'
)
_HEAD = re.compile(r"(\S+) (\S+) (\S+) \[([^\]]*)\] ")  # what precedes the request's opening quote
_MID = re.compile(r" (\d{3}|-) (\d+|-) ")  # between the request's closing quote and the referrer's opening one
_ABSOLUTE = re.compile(r"^(https?://[^/?#\s]*)(/.*)$", re.S | re.I)
_REQUEST = re.compile(r"^([A-Z][A-Z0-9_-]{0,19}) (\S+) (HTTP/\d(?:\.\d)?)$")

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
        self.stats = Stats()
        s = policy.scrubber.to("log")  # the proxy's access log is the same destination: same pseudonyms
        t = policy.truncation

        def url(u: str, scope: str) -> tuple[str, tuple[str, ...]]:
            ch: list[Change] = []
            return s.url(u, scope, ch), tuple(c.rule for c in ch)

        def path(p: str, scope: str) -> tuple[str, bool, tuple[str, ...]]:
            ch: list[Change] = []
            out, generalized = s.path(p, scope, ch)
            return out, generalized, tuple(c.rule for c in ch)

        def param(part: str, scope: str) -> tuple[str, tuple[str, ...]]:
            ch: list[Change] = []
            return s.query(part, scope, ch), tuple(c.rule for c in ch)

        def host(h: str) -> str:
            return truncate.truncate_text(h, t) or "-"  # a host name, garbage: nothing that can identify

        def free(v: str) -> tuple[str, tuple[str, ...]]:
            ch: list[Change] = []
            out = s.free("header", "extra", v, ch)
            return ("" if out is None else out), tuple(c.rule for c in ch)

        # Whole results are cached, with the ids of the rules that changed them: `hash` pseudonyms depend only
        # on (value, period), and check_period() empties the caches when the period changes during a long run.
        # Whole URLs first (referrers and popular pages repeat; one cache per scope, so the URL alone is the
        # key), then their pieces: paths and most parameters repeat even when whole URLs do not.
        self._whole = {scope: lru_cache(maxsize=cache_size)(lambda u, scope=scope: self._scrub_url_uncached(u, scope))
                       for scope in ("path", "referrer")}
        self._url = url  # only reached on a whole-URL cache miss: a second cache of the same key would not hit
        self._path = lru_cache(maxsize=cache_size)(path)
        self._param = lru_cache(maxsize=cache_size)(param)
        self._host = lru_cache(maxsize=cache_size)(host)
        self._agent = lru_cache(maxsize=cache_size)(generalize.user_agent)
        self._free = lru_cache(maxsize=cache_size)(free)
        self._plans: dict[str, dict[str, tuple[str, str, str] | None]] = {"path": {}, "referrer": {}}
        self._v4_24 = t.ipv4_prefix == 24
        self._pseudonym = s.pseudonymizer.pseudonym
        self._plain_prefix = quote(s.pseudonymizer.settings.prefix, safe=SAFE) == s.pseudonymizer.settings.prefix
        self.line: Callable[[str], str | None] = self._combined if fmt == "combined" else self._json
        self._period = policy.scrubber.pseudonymizer.period()

    def _count(self, rules: tuple[str, ...]) -> None:
        for r in rules:
            self.stats.rules[r] += 1

    def _scrub_url(self, u: str, scope: str) -> str:
        out, rules = self._whole[scope](u)
        if rules:
            self._count(rules)
        return out

    def _scrub_url_uncached(self, u: str, scope: str) -> tuple[str, tuple[str, ...]]:
        rules: list[str] = []
        if "#" not in u:
            if u.startswith("/") and not u.startswith("//"):
                return self._scrub_target(u, scope, rules), tuple(rules)
            m = _ABSOLUTE.match(u)
            if m is not None:
                return m.group(1) + self._scrub_target(m.group(2), scope, rules), tuple(rules)
        return self._url(u, scope)

    def _scrub_target(self, u: str, scope: str, rules: list[str]) -> str:
        """Scrubber.url for a request target, piece by piece. Same result as Scrubber.url."""
        path, sep, query = u.partition("?")
        out, generalized, ch = self._path(path, scope)
        rules += ch
        if generalized or not sep:
            return out
        kept = []
        plans = self._plans[scope]
        for part in query.split("&"):
            if not part:
                continue
            name, eq, value = part.partition("=")
            plan = plans.get(name, _UNPLANNED)
            if plan is _UNPLANNED:
                plan = self._plan(scope, name)
            if plan is not None:
                kind, rule, arg = plan
                if kind == "drop":
                    rules.append(rule)
                    continue
                if kind == "redact" and "redacted" not in part and "%" not in part:
                    rules.append(rule)
                    kept.append(arg)
                    continue
                if kind == "hash" and value:
                    rules.append(rule)
                    kept.append(f"{name}={self._pseudonym(unquote_param(value), arg)}")
                    continue
            after, ch = self._param(part, scope)
            rules += ch
            if after:
                kept.append(after)
        return out + "?" + "&".join(kept) if kept else out

    def _plan(self, scope: str, raw_name: str) -> tuple[str, str, str] | None:
        """(action, rule id, argument) when a parameter's name alone decides what becomes of it, else None
        (the value matters: detectors, generalization...).

        Click ids, session tokens, phone numbers and visitor ids carry a new value on almost every line, so
        caching them by value would only churn the caches. Drop and redact do not look at the value (except a
        value that may already be the redaction mark: left to the full path); hash needs only the value.
        """
        s = self.policy.scrubber.to("log")
        name = unquote_param(raw_name)
        rule = s.rules.find("referrer" if scope == "referrer" else "query", name)
        if rule is None and scope == "referrer":
            rule = s.rules.find("query", name)
        plan: tuple[str, str, str] | None = None
        if rule is not None and not rule.report_only and not s.report_only:
            if rule.action == "drop":
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
        self.stats.unparsed += 1
        self.stats.reasons[reason] += 1

    # --- Combined / Common Log Format ------------------------------------------------------------------
    def _combined(self, raw: str) -> str | None:
        """One line of the Combined (or Common) Log Format, filtered; None when it does not parse."""
        raw = raw.rstrip("\r\n")
        if "\\" not in raw:
            # The usual line has exactly six quotes and no escapes: splitting on them is twice as fast as the
            # full expression and gives the same fields (tests/unit/test_offline.py checks they agree).
            p = raw.split('"')
            if len(p) == 7 and p[4] == " " and not p[6]:
                head = _HEAD.fullmatch(p[0])
                mid = _MID.fullmatch(p[2])
                if head is not None and mid is not None:
                    h, _ident, user, when = head.groups()
                    status, size = mid.groups()
                    return self._fields(h, user, when, p[1], status, size, p[3], p[5], "")
        return self._combined_regex(raw)

    def _combined_regex(self, raw: str) -> str | None:
        m = COMBINED.match(raw)
        if m is None:
            self.stats.lines += 1
            self._reject("not_combined")
            return None
        h, _ident, user, when, request, status, size, ref, agent, rest = m.groups()
        if ref is not None:
            ref, agent = _unescape(ref), _unescape(agent)
        return self._fields(h, user, when, request, status, size, ref, agent, rest)

    def _fields(self, h: str, user: str, when: str, request: str, status: str, size: str, ref: str | None,
                agent: str | None, rest: str) -> str:
        rq = _REQUEST.match(request)
        if rq is not None:
            method, target, proto = rq.groups()
            request = f"{method} {self._scrub_url(target, 'path')} {proto}"
        elif request not in ("", "-"):
            request = "-"  # a TLS handshake on a plain port, garbage, a truncated line: nothing in it is safe
            self.stats.rules["unparsed_request"] += 1
        if user != "-":
            self.stats.rules["remote_user"] += 1
        # Most hosts are dotted quads under the default /24: masked by slicing, without a cache entry each.
        m = _QUAD.fullmatch(h) if self._v4_24 else None
        host = h[:m.end(3)] + ".0" if m is not None else self._host(h)
        if ref is None or agent is None:
            out = f'{host} - - [{when}] "{request}" {status} {size}'
        else:
            ref_out = self._scrub_url(ref, "referrer") if ref and ref != "-" else ref
            agent_out = self._agent(agent) if agent and agent != "-" else agent
            out = f'{host} - - [{when}] "{request}" {status} {size} "{_escape(ref_out)}" "{_escape(agent_out) or "-"}"'
        if rest and not rest.isspace():
            scrubbed, rules = self._free(rest)
            if rules:
                self._count(rules)
            out += scrubbed
        self.stats.lines += 1
        self.stats.written += 1
        return out + "\n"

    # --- JSON lines ---------------------------------------------------------------------------------------
    def _json(self, raw: str) -> str | None:
        self.stats.lines += 1
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
        self.stats.written += 1
        return orjson.dumps(out).decode() + "\n"

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
            rq = _REQUEST.match(value)
            return f"{rq.group(1)} {self._scrub_url(rq.group(2), 'path')} {rq.group(3)}" if rq else "-"
        if k in REFERRER_KEYS:
            return self._scrub_url(value, "referrer") if value not in ("", "-") else value
        if k in AGENT_KEYS:
            return self._agent(value) if value else value
        scrubbed, rules = self._free(value)
        if rules:
            self._count(rules)
        return scrubbed

    def check_period(self) -> None:
        """Forget cached pseudonyms when the pseudonymization period changes."""
        period = self.policy.scrubber.pseudonymizer.period()
        if period != self._period:
            self._period = period
            for cached in (*self._whole.values(), self._free, self._path, self._param):
                cached.cache_clear()


def _unescape(v: str) -> str:
    r"""nginx writes `"` as \x22 and Apache as \"; both read back as the character."""
    if "\\" not in v:
        return v
    return re.sub(r"\\x([0-9A-Fa-f]{2})|\\(.)", lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), v)


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _escape(v: str) -> str:
    if _NEEDS_ESCAPE.search(v) is None:
        return v
    return "".join(f"\\x{ord(c):02X}" if c in '"\\' or ord(c) < 0x20 else c for c in v)


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
