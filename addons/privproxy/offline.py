"""The offline log filter: existing nginx/Apache/Caddy logs through the same rules as live traffic (C2, C9, C11).

Fail closed: a line that cannot be parsed is never written out as it came; it is dropped (or quarantined
when the operator asks) and counted. Log lines repeat the same URLs, referrers and agents over and over, so
each of those is scrubbed once and remembered (bounded caches).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from privproxy import generalize, truncate
from privproxy.policy import Policy
from privproxy.scrub import Change

FORMATS = ("combined", "json")

# host ident authuser [time] "request" status bytes ["referer" "user-agent"] [anything nginx appends]
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled: one step per run of plain characters
COMBINED = re.compile(
    rf'^(\S+) (\S+) (\S+) \[([^\]]*)\] {_Q} (\d{{3}}|-) (\d+|-)(?: {_Q} {_Q})?(.*)$'
)
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

    def add(self, changes: Iterable[Change]) -> None:
        for c in changes:
            self.rules[c.rule] += 1


class LogFilter:
    """One policy, one format; `line()` returns the filtered line or None (not written)."""

    def __init__(self, policy: Policy, fmt: str = "combined", cache_size: int = 65536) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
        self.policy = policy
        self.fmt = fmt
        self.stats = Stats()
        s = policy.scrubber
        t = policy.truncation

        def url(u: str, scope: str) -> tuple[str, tuple[Change, ...]]:
            ch: list[Change] = []
            return s.url(u, scope, ch), tuple(ch)

        def path(p: str, scope: str) -> tuple[str, bool, tuple[Change, ...]]:
            ch: list[Change] = []
            out, generalized = s.path(p, scope, ch)
            return out, generalized, tuple(ch)

        def param(part: str, scope: str) -> tuple[str, tuple[Change, ...]]:
            ch: list[Change] = []
            return s.query(part, scope, ch), tuple(ch)

        def host(h: str) -> str:
            return truncate.truncate_text(h, t) or "-"  # a host name, garbage: nothing that can identify

        def free(v: str) -> tuple[str, tuple[Change, ...]]:
            ch: list[Change] = []
            out = s.free("header", "extra", v, ch)
            return ("" if out is None else out), tuple(ch)

        # Whole results are cached: `hash` pseudonyms depend only on (value, period), and run() empties the
        # caches when the pseudonymization period changes during a long run.
        self._url = lru_cache(maxsize=cache_size)(url)
        self._path = lru_cache(maxsize=cache_size)(path)
        self._param = lru_cache(maxsize=cache_size)(param)
        self._host = lru_cache(maxsize=cache_size)(host)
        self._agent = lru_cache(maxsize=cache_size)(generalize.user_agent)
        self._free = lru_cache(maxsize=cache_size)(free)
        self.line: Callable[[str], str | None] = self._combined if fmt == "combined" else self._json
        self._period = policy.scrubber.pseudonymizer.period()

    def _scrub_url(self, u: str, scope: str) -> str:
        if "#" not in u:
            if u.startswith("/") and not u.startswith("//"):
                return self._scrub_target(u, scope)
            m = _ABSOLUTE.match(u)
            if m is not None:
                return m.group(1) + self._scrub_target(m.group(2), scope)
        out, ch = self._url(u, scope)
        if ch:
            self.stats.add(ch)
        return out

    def _scrub_target(self, u: str, scope: str) -> str:
        """Scrubber.url for a request target, piece by piece: paths and most parameters repeat across lines
        even when whole URLs do not, so each piece is cached on its own. Same result as Scrubber.url."""
        path, sep, query = u.partition("?")
        out, generalized, ch = self._path(path, scope)
        if ch:
            self.stats.add(ch)
        if generalized or not sep:
            return out
        kept = []
        for part in query.split("&"):
            if not part:
                continue
            after, ch = self._param(part, scope)
            if ch:
                self.stats.add(ch)
            if after:
                kept.append(after)
        return out + "?" + "&".join(kept) if kept else out

    def _reject(self, reason: str) -> None:
        self.stats.unparsed += 1
        self.stats.reasons[reason] += 1

    # --- Combined / Common Log Format ------------------------------------------------------------------
    def _combined(self, raw: str) -> str | None:
        self.stats.lines += 1
        m = COMBINED.match(raw.rstrip("\r\n"))
        if m is None:
            self._reject("not_combined")
            return None
        h, _ident, user, when, request, status, size, ref, agent, rest = m.groups()
        rq = _REQUEST.match(request)
        if rq is not None:
            request = f"{rq.group(1)} {self._scrub_url(rq.group(2), 'path')} {rq.group(3)}"
        elif request not in ("", "-"):
            request = "-"  # a TLS handshake on a plain port, garbage, a truncated line: nothing in it is safe
            self.stats.rules["unparsed_request"] += 1
        if user != "-":
            self.stats.rules["remote_user"] += 1
        out = f'{self._host(h)} - - [{when}] "{request}" {status} {size}'
        if ref is not None:
            ref_out = self._scrub_url(_unescape(ref), "referrer") if ref not in ("", "-") else ref
            agent_out = self._agent(_unescape(agent)) if agent not in ("", "-") else agent
            out += f' "{_escape(ref_out)}" "{_escape(agent_out) or "-"}"'
        if rest.strip():
            scrubbed, ch = self._free(rest)
            if ch:
                self.stats.add(ch)
            out += scrubbed
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
        scrubbed, ch = self._free(value)
        if ch:
            self.stats.add(ch)
        return scrubbed

    def check_period(self) -> None:
        """Forget cached pseudonyms when the pseudonymization period changes."""
        period = self.policy.scrubber.pseudonymizer.period()
        if period != self._period:
            self._period = period
            for cached in (self._url, self._free, self._path, self._param):
                cached.cache_clear()

    def run(self, lines: Iterable[str], write: Callable[[str], Any],
            quarantine: Callable[[str], Any] | None = None) -> Stats:
        for n, raw in enumerate(lines):
            if n & 4095 == 0:
                self.check_period()
            out = self.line(raw)
            if out is not None:
                write(out)
            elif quarantine is not None:
                quarantine(raw if raw.endswith("\n") else raw + "\n")
        return self.stats



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


def iter_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """Bytes to text without ever failing: undecodable bytes become U+FFFD (and cannot hide an identifier)."""
    for b in stream:
        yield b.decode("utf-8", "replace")


# --- parallel filtering: mitmproxy-free worker processes, one chunk of lines at a time, output in order ------
_worker: LogFilter | None = None


def _init_worker(policy: Policy, fmt: str) -> None:
    global _worker
    _worker = LogFilter(policy, fmt)


def _filter_chunk(chunk: list[bytes]) -> tuple[list[str], list[str], Stats]:
    assert _worker is not None
    _worker.stats = Stats()
    _worker.check_period()
    kept: list[str] = []
    rejected: list[str] = []
    for b in chunk:
        raw = b.decode("utf-8", "replace")
        out = _worker.line(raw)
        if out is not None:
            kept.append(out)
        else:
            rejected.append(raw if raw.endswith("\n") else raw + "\n")
    return kept, rejected, _worker.stats


def merge(total: Stats, part: Stats) -> None:
    total.lines += part.lines
    total.written += part.written
    total.unparsed += part.unparsed
    total.rules.update(part.rules)
    total.reasons.update(part.reasons)


def chunks(stream: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for b in stream:
        chunk.append(b)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_parallel(policy: Policy, fmt: str, stream: Iterable[bytes], workers: int,
                 chunk_size: int = 4096) -> Iterator[tuple[list[str], list[str], Stats]]:
    """Filtered chunks in input order. Workers are forked, so they share the parent's pseudonymization secret
    (an ephemeral one included) and compute the same pseudonyms."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(policy, fmt)) as pool:
        yield from pool.imap(_filter_chunk, chunks(stream, chunk_size))
