"""The one-way data flow of a request: resolve client -> classify -> scrub -> forward and log (C1, C2, C8, C9).

Plain Python over a RequestView, so the mitmproxy adapter, the offline tools and the tests share it. This is
the fail-closed boundary: `begin` never raises; when anything goes wrong the request still goes out, but with
every address header removed and the log record reduced to what is known to be safe.
"""

from __future__ import annotations

import fnmatch
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from privproxy import beacon, client_ip, generalize, geo, https, truncate, vendors
from privproxy.access_log.record import LogRecord
from privproxy.consent import decision as consent
from privproxy.policy import Policy
from privproxy.scrub import Change, Scrubber
from privproxy.sites import Site
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
    host: str
    path: str  # path and query as sent
    get_all: Callable[[str], list[str]]
    http_version: str = "HTTP/1.1"
    tls_version: str | None = None

    def first(self, name: str) -> str | None:
        """The first value of a header as sent (lower-case name), or None."""
        values = self.get_all(name)
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
    set_headers: dict[str, str] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    cookie: str | None = None  # the Cookie header the origin gets, when the rules changed it ("" = none)
    place: geo.Place = geo.Place()  # coarse geography of the full address, looked up before truncation
    geo_result: str = "disabled"
    country: str = ""  # before the small-cell guard; chooses region rules and is never logged
    decision: consent.Decision = consent.NONE  # member-linkage consent: one per request, only ever made stricter
    drop_headers: tuple[str, ...] = ()  # hop-only headers the origin must not get (the trusted consent header)
    codec: Codec | None = None  # the analytics vendor whose collection path this request is for
    failures: list[tuple[str, str]] = field(default_factory=list)  # (stage, reason) for metrics
    filter_seconds: float = 0.0

    @property
    def consent(self) -> bool:
        """Identifiers in beacons, vendor cookies and tracking Set-Cookies pass as sent."""
        return self.decision.analytics

    @property
    def scrubber(self) -> Scrubber:
        """The rules for this visitor's country (region rules, C14); every rule when the country is unknown."""
        return self.policy.scrubber_for(self.country)


def new_request_id() -> str:
    return secrets.token_hex(8)


def begin(view: RequestView, policy: Policy, locator: geo.Locator | None = None) -> FlowState:
    """Resolve the client, pick the site, decide about HTTPS, and compute the headers the origin gets."""
    t0 = time.perf_counter()
    state = FlowState(policy, policy.sites.default, None, view.tls, new_request_id(), time.time())
    try:
        state.site = policy.sites.for_host(view.host)
        state.client = client_ip.resolve(view.peer, view.tls, view.get_all, policy.client_ip)
        if state.client is None:
            state.failures.append(("client_ip", "unparsable_peer"))
        else:
            state.https = state.client.https
            if locator is not None:
                located = locator.locate(state.client.ip)
                state.place, state.geo_result, state.country = located.place, located.result, located.country
        state.decision = decide_consent(view, policy, state.client)
        path_only = view.path.split("?", 1)[0]
        state.codec = policy.beacons.codec_for(path_only, state.site.beacon_paths)
        hs = policy.https
        if not state.https and hs.redirect and not hs.is_exempt(path_only):
            state.redirect = https.redirect_location(view.host, view.path, hs)
            state.refused = state.redirect is None
        state.set_headers = {
            "x-forwarded-for": state.client.truncated if state.client else "",
            "x-forwarded-proto": "https" if state.https else "http",
            "x-request-id": state.request_id,
        }
        if view.host and https.redirect_location(view.host, "/", hs) is not None:
            state.set_headers["x-forwarded-host"] = view.host
        if not state.set_headers["x-forwarded-for"]:
            del state.set_headers["x-forwarded-for"]
    except Exception as e:  # fail closed: headers below are safe whatever went wrong above
        state.failures.append(("classify", type(e).__name__))
        state.decision = consent.NONE
        state.set_headers = {"x-forwarded-proto": "https" if view.tls else "http", "x-request-id": state.request_id}
    if policy.consent.header:
        state.drop_headers = (policy.consent.header,)
    scrub_cookies(state, view)
    state.filter_seconds += time.perf_counter() - t0
    return state


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
            state.cookie = beacon.cookie_header(joined, state.scrubber, state.policy.beacons, state.changes)
            return
        after = state.scrubber.cookie_header(joined, state.changes)
        if after != joined:
            state.cookie = after
    except Exception as e:  # fail closed: no cookie rather than an unscrubbed one
        state.failures.append(("cookie", type(e).__name__))
        state.cookie = ""


def vendor_cookies(header: str, codec: Codec) -> str:
    if not codec.cookies:
        return ""
    kept = []
    for part in header.split(";"):
        name = part.partition("=")[0].strip()
        if name and any(fnmatch.fnmatchcase(name, pattern) for pattern in codec.cookies):
            kept.append(part.strip())
    return "; ".join(kept)


def scrub_beacon(state: FlowState, view: RequestView, body: bytes, content_type: str,
                 content_encoding: str) -> beacon.Result:
    """The beacon the vendor gets: scrubbed unless the member consented; never raises (fail closed)."""
    t0 = time.perf_counter()
    assert state.codec is not None
    path, _, query = view.path.partition("?")
    b = Beacon(view.method, path, query, content_type, content_encoding, body)
    try:
        codec = vendors.sniff(state.codec, b)
        state.codec = codec
        result = beacon.process(codec, b, state.scrubber, state.policy.beacons, state.consent, state.changes)
        if result.denied and state.decision.state == "valid":
            # The beacon's own consent flags refuse: stricter wins, for the cookies and the logs too.
            state.decision = state.decision.overridden("beacon_opt_out")
            state.cookie = None
            scrub_cookies(state, view)
    except Exception as e:  # a bug in a codec must not let the identifiers through
        state.failures.append(("beacon", type(e).__name__))
        result = beacon.Result(state.codec.name, False, "", b"", reason="internal_error")
    state.filter_seconds += time.perf_counter() - t0
    return result


def beacon_headers(state: FlowState, get: Callable[[str], str | None]) -> dict[str, str | None]:
    """Header changes toward the vendor: the user agent by the header rules, the referrer by the URL rules."""
    if state.consent:
        return {}
    out: dict[str, str | None] = {name: None for name in HIGH_ENTROPY_HINTS if get(name) is not None}
    scrubber = state.scrubber
    ua = get("user-agent")
    if ua:
        after = scrubber.named("header", "user-agent", ua, state.changes) \
            if scrubber.rules.find("header", "user-agent") else ua
        if after != ua:
            out["user-agent"] = after
    ref = get("referer")
    if ref:
        try:
            after = scrubber.url(ref, "referrer", state.changes)
        except Exception as e:
            state.failures.append(("beacon", type(e).__name__))
            after = None
        if after != ref:
            out["referer"] = after
    return out


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
    except Exception as e:  # fail closed: a page without cookies still renders
        state.failures.append(("set_cookie", type(e).__name__))
        return []


def log_record(state: FlowState, view: RequestView, status: int, size: int | None, outcome: str,
               ended: float, user_agent: str = "", referrer: str = "", instance: str = "") -> LogRecord:
    """The access-log record: truncated address, scrubbed URL and referrer, generalized user agent."""
    t0 = time.perf_counter()
    scrubber = state.scrubber
    path_only = view.path.split("?", 1)[0]
    try:
        # A beacon's query string is the vendor's payload, full of ids only its codec knows (Matomo `_id`, Meta
        # `fbp`...): the anonymous log keeps its path only, whatever the consent (C2).
        path = scrubber.url(path_only if state.codec is not None else view.path, "path", state.changes)
    except Exception as e:
        state.failures.append(("log_path", type(e).__name__))
        path = path_only if not scrubber.sensitive(path_only) else "[redacted]"
    try:
        ref = scrubber.url(referrer, "referrer", state.changes) if referrer else ""
    except Exception as e:
        state.failures.append(("log_referrer", type(e).__name__))
        ref = ""
    host = view.host if https.redirect_location(view.host, "/", state.policy.https) else "-"
    record = LogRecord(
        ts=state.started,
        request_id=state.request_id,
        site=state.site.name,
        client=state.client.truncated if state.client else "-",
        method=view.method if view.method.isalpha() and len(view.method) <= 16 else "-",
        scheme="https" if state.https else "http",
        host=host,
        path=path,
        proto=view.http_version,
        status=status,
        bytes=size,
        duration_ms=round(max(0.0, ended - state.started) * 1000, 3),
        outcome=outcome,
        tls=view.tls_version,
        user_agent=generalize.user_agent(user_agent),
        referrer=ref,
        country=state.place.country,
        region=state.place.subdivision,
        city=state.place.city,
        instance=instance,
    )
    state.filter_seconds += time.perf_counter() - t0
    return record
