"""The one-way data flow of a request: resolve client -> classify -> scrub -> forward and log (C1, C2, C8, C9).

Plain Python over a RequestView, so the mitmproxy adapter, the offline tools and the tests share it. This is
the fail-closed boundary: `begin` never raises; when anything goes wrong the request still goes out, but with
every address header removed and the log record reduced to what is known to be safe.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from privproxy import beacon, beacons, client_ip, generalize, geo, https, target, truncate, vendors, wire
from privproxy import referrer as ref_mod
from privproxy.access_log import formats
from privproxy.access_log.record import LogRecord
from privproxy.consent import decision as consent
from privproxy.outcome import ConsentState, Outcome, Stage
from privproxy.fields import Echoes, RuleSet, TooMuchWork
from privproxy.policy import Policy
from privproxy.scrub import Change, Scrubber
from privproxy.sites import Site
from privproxy.target import Target
from privproxy.vendors.base import Beacon, Codec

FORWARD_STRIP = frozenset(client_ip.ADDRESS_HEADERS + ("x-request-id",))
# User-agent client hints a browser sends only when asked (Accept-CH): together they fingerprint a device (C9).
HIGH_ENTROPY_HINTS = ("sec-ch-ua-full-version-list", "sec-ch-ua-full-version", "sec-ch-ua-model",
                      "sec-ch-ua-platform-version", "sec-ch-ua-arch", "sec-ch-ua-bitness", "sec-ch-ua-wow64")


@dataclass(frozen=True, slots=True)
class RequestView:
    peer: str
    tls: bool
    method: str
    host: str  # the Host the request names: HTTP/2 :authority, else the Host field, as sent
    path: str  # the request target as sent (origin-form; absolute-form or `*` when sent so)
    get_all: Callable[[str], list[str]]
    http_version: str = "HTTP/1.1"
    tls_version: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # every header field as sent, (name, value), in order
    authority: str = ""  # an HTTP/1 absolute-form target's authority, or HTTP/2's :authority
    index: Mapping[str, list[str]] | None = None  # get_all's own table, when it has one (read a dozen times)

    def first(self, name: str) -> str | None:
        """The first value of a header as sent (lower-case name), or None."""
        values = self.index.get(name) if self.index is not None else self.get_all(name)
        return values[0] if values else None


@dataclass(slots=True)
class FlowState:
    """What privproxy decided about one request, pinned to the Policy generation that decided it."""

    policy: Policy
    site: Site
    client: client_ip.Client | None
    https: bool
    request_id: str
    started: float
    redirect: str | None = None  # Location, when plain HTTP is answered with a redirect
    refused: bool = False  # a plain-HTTP request whose Host could not be redirected safely
    answer: tuple[int, str] | None = None  # (status, reason): refused here, never forwarded (wire.REASONS...)
    target: Target | None = None  # the canonical request target every matcher uses
    host: str = ""  # the canonical Host (wire.canonical_host), "" when the request names none
    forward_target: str | None = None  # the target sent upstream when it differs from the one received
    beacon_path: str = ""  # a beacon's collection path in the vendor's spelling
    set_headers: dict[str, str] = field(default_factory=dict)
    strip_headers: frozenset[str] = frozenset()  # fields whose value holds an address, whatever their name
    changes: list[Change] = field(default_factory=list)
    cookie: str | None = None  # the Cookie header the origin gets, when the rules changed it ("" = none)
    place: geo.Place = geo.Place()  # coarse geography of the full address, looked up before truncation
    geo_result: str = "disabled"
    country: str = ""  # before the small-cell guard; chooses region rules and is never logged
    decision: consent.Decision = consent.NONE  # member-linkage consent: one per request, only ever made stricter
    drop_headers: tuple[str, ...] = ()  # hop-only headers the origin must not get (the trusted consent header)
    codec: Codec | None = None  # the analytics vendor whose collection path this request is for
    forward: beacons.Forward | None = None  # the beacon goes straight to its vendor (privproxy.gateway)
    script: beacons.Script | None = None  # a vendor's tracker script privproxy serves from this path
    failures: list[tuple[Stage, str]] = field(default_factory=list)  # (stage, reason) for metrics
    filter_seconds: float = 0.0
    # (url, scope) -> (rules, scrubbed, changes) of URLs scrubbed without a pseudonym: the same for every
    # destination with these rules (scrub_url)
    scrubbed_urls: dict[tuple[str, str], tuple[RuleSet, str, tuple[Change, ...]]] | None = None

    @property
    def consent(self) -> bool:
        """Identifiers in beacons, vendor cookies and tracking Set-Cookies pass as sent."""
        return self.decision.analytics

    @property
    def scrubber(self) -> Scrubber:
        """The rules for this visitor's country (region rules, C14); every rule when the country is unknown."""
        return self.policy.scrubber_for(self.country)


def new_request_id() -> str:
    """16 hex digits from the system's CSPRNG, drawn 256 at a time: one getrandom call per request was 0.5 % of a
    beacon's CPU. A forked child starts its own draw (os.register_at_fork below), so no two processes share one."""
    while True:
        try:
            return next(_ids)
        except StopIteration:
            _refill_ids()


def _refill_ids() -> None:
    global _ids
    block = os.urandom(8 * 256).hex()
    _ids = iter([block[i:i + 16] for i in range(0, len(block), 16)])


_ids = iter(())
os.register_at_fork(after_in_child=_refill_ids)


# Fields whose values name servers, not visitors (Host, Referer, Origin), and the Cookie, whose values the
# cookie rules and detectors see one by one; every other field holding an address is removed (judged by value,
# and by name: `X_Forwarded_For` is X-Forwarded-For to a CGI server).
_NOT_ADDRESSES = frozenset({"host", "cookie", "referer", "origin"}) | FORWARD_STRIP
# When classification itself failed, only these pass: the message framing and content negotiation.
_KEPT_ON_FAILURE = frozenset({"host", "cookie", "content-length", "transfer-encoding", "content-type",
                              "content-encoding", "accept", "accept-encoding", "accept-language", "connection",
                              "upgrade", "cache-control", "if-none-match", "if-modified-since", "range"})


def begin(view: RequestView, policy: Policy, locator: geo.Locator | None = None, country: str = "") -> FlowState:
    """Resolve the client, read the request head as the origin will, pick the site, decide about HTTPS,
    and compute the headers the origin gets. `country` stands in for a geo lookup (explain --country)."""
    t0 = time.perf_counter()
    state = FlowState(policy, policy.sites.default, None, view.tls, new_request_id(), time.time())
    try:
        state.client = client_ip.resolve(view.peer, view.tls, view.get_all, policy.client_ip)
        read_head(state, view)
        state.site = policy.sites.for_host(state.host)
        state.country = country
        if state.client is None:
            state.failures.append((Stage.CLIENT_IP, "unparsable_peer"))
        else:
            state.https = state.client.https
            if locator is not None:
                located = locator.locate(state.client.ip)
                state.place, state.geo_result, state.country = located.place, located.result, located.country
        state.decision = decide_consent(view, policy, state.client)
        hs = policy.https
        if state.target is not None:
            try:
                match = policy.beacons.match(state.target.path, state.site.beacon_paths)
            except vendors.AmbiguousPath:
                match, state.answer = None, (400, "ambiguous_path")
            if match is not None:
                state.codec, state.beacon_path = match
            elif view.method in ("GET", "HEAD"):
                state.script = policy.beacons.script_for(state.target.path)
            if not state.https and hs.redirect and not hs.is_exempt(state.target):
                state.redirect = https.redirect_location(state.host, state.target.raw, hs)
                state.refused = state.redirect is None
        state.set_headers = {
            "x-forwarded-for": state.client.truncated if state.client else "",
            "x-forwarded-proto": "https" if state.https else "http",
            "x-request-id": state.request_id,
        }
        if state.host and https.redirect_location(state.host, "/", hs) is not None:
            state.set_headers["x-forwarded-host"] = state.host
        if not state.set_headers["x-forwarded-for"]:
            del state.set_headers["x-forwarded-for"]
        address_in = policy.client_ip.holds_address
        strip = set()
        for name, value in view.fields:
            low = name.lower()
            if low not in _NOT_ADDRESSES and low not in strip and (
                    client_ip.is_address_header(low) or address_in(value)):
                strip.add(low)
        state.strip_headers = frozenset(strip)
    except Exception as e:  # noqa: BLE001 - fail closed: headers below are safe whatever went wrong above
        state.failures.append((Stage.CLASSIFY, type(e).__name__))
        state.decision = consent.NONE
        state.set_headers = {"x-forwarded-proto": "https" if view.tls else "http", "x-request-id": state.request_id}
        state.strip_headers = frozenset(name.lower() for name, _ in view.fields
                                        if name.lower() not in _KEPT_ON_FAILURE)
        if state.target is None and state.answer is None:
            state.answer = (400, "bad_target")
    if policy.consent.header:
        state.drop_headers = (policy.consent.header,)
    scrub_cookies(state, view)
    state.filter_seconds += time.perf_counter() - t0
    return state


def read_head(state: FlowState, view: RequestView) -> None:
    """The request head as the origin will read it: refused (state.answer) when RFC 9110/9112/9113 forbid it
    or it names two different hosts; else the canonical target and Host, and what must be sent instead of
    an absolute-form or non-canonical spelling."""
    fields = view.fields
    reason = wire.check_head(view.method, fields, sum(1 for name, _ in fields if name.lower() == "host"))
    t: Target | None = None
    if reason is None:
        try:
            t = target.parse(view.path)
        except target.TargetError:
            reason = "bad_target"
    hosts: set[str] = set()
    if reason is None:
        assert t is not None
        named = [h for h in (view.host, view.authority, t.authority, view.first("host")) if h]
        for h in named:
            canonical = wire.canonical_host(h)
            if canonical is None:
                reason = "bad_host"
                break
            hosts.add(canonical)
        if reason is None and len({wire.host_name(h) for h in hosts}) > 1:
            reason = "bad_host"  # the origin would pick its virtual host by one name, privproxy its site by another
    if reason is not None or t is None:
        state.answer = (400, reason or "bad_target")
        return
    state.target = t
    if hosts:
        # the Host field's own spelling decides the port; all spellings name one host
        state.host = wire.canonical_host(view.host) if view.host and wire.canonical_host(view.host) else hosts.pop()
    if t.raw != view.path:
        state.forward_target = t.raw  # absolute-form or HTTP/2 `:path` in absolute form: origin-form upstream


def decide_consent(view: RequestView, policy: Policy, client: client_ip.Client | None) -> consent.Decision:
    """The member-linkage decision; the consent header counts only when the peer is a trusted proxy."""
    settings = policy.consent
    if not settings.enabled:
        return consent.NONE
    header: list[str] = []
    if settings.header and client is not None:
        peer = truncate.parse_ip(view.peer)
        if peer is not None and policy.client_ip.is_trusted(peer):
            header = view.get_all(settings.header)
    return consent.decide(settings, view.get_all("cookie"), header, view.get_all("sec-gpc"), view.get_all("dnt"),
                          time.time())


def scrub_cookies(state: FlowState, view: RequestView) -> None:
    """Tracking cookies reach the origin pseudonymized or not at all (C4); the site's own cookies pass."""
    codec = state.codec
    if state.consent and codec is None:
        return
    try:
        sent = view.get_all("cookie")
        if not sent:
            return
        joined = "; ".join(sent)
        if codec is not None:
            # A beacon carries every cookie of the site; its vendor gets only the ones its collector reads.
            joined = vendor_cookies(joined, codec)
            if state.consent:
                state.cookie = joined
                return
            state.cookie = beacon.cookie_header(joined, state.scrubber.to(codec.name), state.policy.beacons,
                                                state.changes)
            return
        after = state.scrubber.to("origin").cookie_header(joined, state.changes)
        if after != joined:
            state.cookie = after
    except Exception as e:  # noqa: BLE001 - fail closed: no cookie rather than an unscrubbed one
        state.failures.append((Stage.COOKIE, type(e).__name__))
        state.cookie = ""


def vendor_cookies(header: str, codec: Codec) -> str:
    if not codec.cookies:
        return ""
    match = _cookie_globs(codec.cookies)
    kept = []
    for part in Scrubber.split_cookies(header):  # `a=1, _ga=...` too: `_ga` is a cookie of its own
        name = part.partition("=")[0].strip()
        if name and match(name):
            kept.append(part)
    return "; ".join(kept)


@functools.lru_cache(maxsize=64)
def _cookie_globs(patterns: tuple[str, ...]) -> Callable[[str], object]:
    """fnmatch.fnmatchcase against any of `patterns`, as one compiled expression (the codecs' fixed globs)."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


def scrub_beacon(state: FlowState, view: RequestView, body: bytes, content_type: str,
                 content_encoding: str) -> beacon.Result:
    """The beacon the vendor gets: scrubbed unless the member consented; never raises (fail closed)."""
    t0 = time.perf_counter()
    assert state.codec is not None and state.target is not None
    b = Beacon(view.method, state.beacon_path, state.target.query or "", content_type, content_encoding, body)
    try:
        if state.policy.beacons.bots == "drop" and generalize.agent(view.first("user-agent") or "").bot:
            state.filter_seconds += time.perf_counter() - t0
            return beacon.Result(state.codec.name, False, "", b"", reason="bot")  # a crawler counts no visitor
        codec = vendors.sniff(state.codec, b)
        state.codec = codec
        result = beacon.process(codec, b, state.scrubber.to(codec.name), state.policy.beacons, state.consent,
                                state.changes)
        if result.denied and state.decision.state == ConsentState.VALID:
            # The beacon's own consent flags refuse: stricter wins, for the cookies and the logs too.
            state.decision = state.decision.overridden(ConsentState.BEACON_OPT_OUT)
            state.cookie = None
            scrub_cookies(state, view)
    except Exception as e:  # noqa: BLE001 - a bug in a codec must not let the identifiers through
        state.failures.append((Stage.BEACON, type(e).__name__))
        result = beacon.Result(state.codec.name, False, "", b"", reason="internal_error")
    state.filter_seconds += time.perf_counter() - t0
    return result


@dataclass(frozen=True, slots=True)
class Answer:
    """What privproxy answers itself, before any origin is asked."""

    status: int
    outcome: Outcome  # the record's outcome
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


_PLAIN = (("Content-Type", "text/plain"), ("Cache-Control", "no-store"))


def own_answer(state: FlowState) -> Answer | None:
    """The answer to a request privproxy does not forward: a head no origin reads one way only (400), plain
    HTTP (the redirect to HTTPS), or plain HTTP whose Host cannot be redirected to safely (400)."""
    if state.answer is not None:
        return Answer(state.answer[0], Outcome.BAD_REQUEST, (*_PLAIN, ("Connection", "close")), b"Bad Request\n")
    if state.redirect:
        return Answer(state.policy.https.redirect_status, Outcome.REDIRECTED,
                      (("Location", state.redirect), ("Content-Length", "0"), ("Cache-Control", "no-store")))
    if state.refused:
        return Answer(400, Outcome.REFUSED, _PLAIN, b"Bad Request: invalid Host header\n")
    return None


def forward_fields(state: FlowState, fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The header fields the origin (or a vendor's collector) gets, in order: the fields as sent without any
    address header (by name or by value), the hop-only consent header and, when the rules changed it, the
    Cookie; then privproxy's own X-Forwarded-* and X-Request-Id, and the scrubbed Cookie."""
    remove = FORWARD_STRIP
    if state.strip_headers or state.drop_headers or state.cookie is not None:
        remove = remove | state.strip_headers | set(state.drop_headers) | ({"cookie"} if state.cookie is not None
                                                                          else set())
    out = [(k, v) for k, v in fields if k.lower() not in remove]
    out += state.set_headers.items()
    if state.cookie:
        out.append(("cookie", state.cookie))
    return out


@dataclass(slots=True)
class BeaconForward:
    """A beacon as it goes to the vendor, or why it does not (`result.forward` False: the proxy answers)."""

    result: beacon.Result
    target: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def forward_beacon(state: FlowState, view: RequestView, body: bytes) -> BeaconForward:
    """The beacon the vendor gets, whole: its collection path in the vendor's spelling, the query and body as
    the codec encoded what it inspected, and the header fields of `forward_fields` with the user agent,
    referrer and client hints reduced, and the framing headers for the new body. Never raises."""
    result = scrub_beacon(state, view, body, view.first("content-type") or "", view.first("content-encoding") or "")
    if not result.forward:
        return BeaconForward(result)
    assert state.target is not None and state.codec is not None
    state.forward = state.policy.beacons.forward_for(state.codec.name)  # after sniff: the vendor it decoded as
    out = BeaconForward(result, f"{state.beacon_path}?{result.query}" if result.query else state.beacon_path,
                        body=result.body)
    changes = beacon_headers(state, view.first, result.echoes)
    framing = result.body != body
    done: set[str] = set()
    for k, v in forward_fields(state, view.fields):  # after scrubbing: a beacon's opt-out changes the Cookie
        name = k.lower()
        if name in changes:
            after = changes[name]
            if after is not None and name not in done:  # a second copy of a changed field would pass unread
                out.fields.append((k, after))
            done.add(name)
        elif not (framing and name in ("content-length", "transfer-encoding")):
            out.fields.append((k, v))
    if framing and (result.body or view.method not in ("GET", "HEAD")):
        out.fields.append(("content-length", str(len(result.body))))
    return out


def beacon_headers(state: FlowState, get: Callable[[str], str | None],
                   echoes: Echoes | None = None) -> dict[str, str | None]:
    """Header changes toward the vendor: the user agent by the header rules, the referrer by the URL rules, and
    in both any copy of an identifier the beacon itself carried (`echoes`: its uid in the page's URL...)."""
    if state.consent:
        return {}
    out: dict[str, str | None] = {name: None for name in HIGH_ENTROPY_HINTS if get(name) is not None}
    scrubber = state.scrubber.to(state.codec.name) if state.codec is not None else state.scrubber.to("origin")
    ua = get("user-agent")
    if ua:
        after = scrubber.named("header", "user-agent", ua, state.changes) \
            if scrubber.rules.find("header", "user-agent") else ua
        after = _echoed(after, echoes, state, "user-agent")
        if after != ua:
            out["user-agent"] = after
    ref = get("referer")
    if ref:
        try:
            after = scrub_url(state, scrubber, ref, "referrer")
        except Exception as e:  # noqa: BLE001 - fail closed: no Referer rather than an unscrubbed one
            state.failures.append((Stage.BEACON, type(e).__name__))
            after = None
        after = _echoed(after, echoes, state, "referer")
        if after != ref:
            out["referer"] = after
    return out


def _echoed(value: str | None, echoes: Echoes | None, state: FlowState, name: str) -> str | None:
    if not value or echoes is None:
        return value
    try:
        found = echoes.find(value)
    except TooMuchWork:  # a header built to make the search expensive: not sent
        return None
    if found is None:
        return value
    after, hits = found
    state.changes.extend(Change("header", name, e.rule, e.action, value, after, e.report_only) for e in hits)
    return after


def scrub_set_cookies(state: FlowState, headers: list[str]) -> list[str]:
    """The Set-Cookie headers the visitor gets: tracking cookies are not set without consent (C4, C5)."""
    if state.consent or not headers:
        return headers
    try:
        kept = []
        for h in headers:
            after = state.scrubber.set_cookie(h, state.changes)
            if after is not None:
                kept.append(after)
        return kept
    except Exception as e:  # noqa: BLE001 - fail closed: a page without cookies still renders
        state.failures.append((Stage.SET_COOKIE, type(e).__name__))
        return []


def scrub_url(state: FlowState, scrubber: Scrubber, url: str, scope: str) -> str:
    """scrubber.url(url, scope, state.changes), for a URL the request may carry to two destinations (its Referer
    goes to the vendor and to the log): scrubbed once when the result holds no pseudonym, the only part of it
    that differs by destination (Scrubber.to keeps the rules, detectors and modes and changes the key)."""
    memo = state.scrubbed_urls
    got = memo.get((url, scope)) if memo is not None else None
    if got is not None and got[0] is scrubber.rules:
        state.changes.extend(got[2])
        return got[1]
    made: list[Change] = []
    try:
        out = scrubber.url(url, scope, made)
    finally:
        state.changes.extend(made)  # what was found before a failure is counted, as it was found
    if not any(c.action == "hash" for c in made):
        if memo is None:
            memo = state.scrubbed_urls = {}
        memo[(url, scope)] = (scrubber.rules, out, tuple(made))
    return out


def logged_referrer(policy: Policy, url: str, own: Callable[[str], bool], changes: list[Change] | None) -> str:
    """What of a Referer the log keeps before the URL rules (privproxy.referrer): the level for an external or
    internal page (filter-log reduces the same way, with its --site-host as the site's hosts)."""
    kept = policy.referrer.reduce(url, own)
    if kept != url and changes is not None:
        changes.append(Change("referrer", "referrer", "referrer", "generalize" if kept else "drop", url, kept or None,
                              False))
    return kept


def logged_query(policy: Policy, url: str, changes: list[Change] | None) -> str:
    """A scrubbed URL with only the parameters `logging.query_allowlist` names, when it is set."""
    out, dropped = policy.logging.query_allowlist.apply(url)
    if dropped and changes is not None:
        changes.extend(Change("query", name, "query_allowlist", "drop", url, out, False) for name in dropped)
    return out


def log_record(state: FlowState, view: RequestView, status: int, size: int | None, outcome: Outcome,
               ended: float, user_agent: str = "", referrer: str = "", instance: str = "") -> LogRecord:
    """The access-log record: truncated address, scrubbed URL and referrer, generalized user agent."""
    t0 = time.perf_counter()
    scrubber = state.scrubber.to("log")
    t = state.target
    try:
        agent = generalize.agent(user_agent)
    except Exception as e:  # noqa: BLE001 - fail closed: an agent that could not be read is logged as none
        state.failures.append((Stage.ACCESS_LOG, type(e).__name__))
        agent = generalize.Agent()
    try:
        if t is None:
            path = "-"  # refused before it could be read: nothing of it is known to be safe
        elif state.codec is not None:
            # A beacon's query string is the vendor's payload, full of ids only its codec knows (Matomo `_id`,
            # Meta `fbp`...): the anonymous log keeps its collection path only, whatever the consent (C2).
            path = scrubber.url(state.beacon_path, "path", state.changes)
        else:
            path = scrubber.url(t.raw, "path", state.changes)
        path = logged_query(state.policy, path, state.changes)
    except Exception as e:  # noqa: BLE001 - fail closed: no path rather than an unscrubbed one
        state.failures.append((Stage.LOG_PATH, type(e).__name__))
        path = "[redacted]"
    try:
        ref = ""
        if referrer:
            own = ref_mod.host_name(state.host) if state.host else ""
            kept = logged_referrer(state.policy, referrer, lambda h: h == own or state.site.matches(h), state.changes)
            ref = logged_query(state.policy, scrub_url(state, scrubber, kept, "referrer"), state.changes) \
                if kept else ""
    except Exception as e:  # noqa: BLE001 - fail closed: no referrer rather than an unscrubbed one
        state.failures.append((Stage.LOG_REFERRER, type(e).__name__))
        ref = ""
    host = "-"
    if state.host and https.redirect_location(state.host, "/", state.policy.https):
        host = scrubber.free("header", "host", state.host, state.changes) or "-"  # an address as Host: truncated
    record = LogRecord(
        ts=state.started,
        request_id=state.request_id,
        site=state.site.name,
        client=state.client.truncated if state.client else "-",
        method=view.method if view.method.isalpha() and len(view.method) <= 16 else "-",
        scheme="https" if state.https else "http",
        host=host,
        path=formats.text(path),
        proto=view.http_version,
        status=status,
        bytes=size,
        duration_ms=round(max(0.0, ended - state.started) * 1000, 3),
        outcome=outcome,
        tls=view.tls_version,
        user_agent=formats.text(str(agent)),
        bot=agent.bot,
        referrer=formats.text(ref),
        country=state.place.country,
        region=state.place.subdivision,
        city=state.place.city,
        instance=instance,
        vendor=state.codec.name if state.forward is not None and state.codec is not None else "",
    )
    state.filter_seconds += time.perf_counter() - t0
    return record
