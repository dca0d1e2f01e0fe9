"""[beacons.forward] The first-party analytics gateway: a scrubbed beacon goes straight to its vendor's collector,
and the vendor's answer back to the browser (C4, C5, C6, C8).

Plain Python (asyncio and httpx): what the vendor gets (`vendor_request`: the canonical path without the
first-party prefix, the vendor's Host, the truncated address in the form the vendor reads, no hop or proxy
headers), what the visitor gets back (`answer_fields`: status, body, content and CORS headers; HSTS and the
Set-Cookie rules are added by the proxy's response path as for any answer), and the pooled, verified client
(`VendorClient`). The mitmproxy adapter is privproxy.mitm.gateway.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import parse_qs, urlsplit
from typing import Any

import httpx

from privproxy import beacons, vendor_consent, vendors
from privproxy.consent import decision as consent
from privproxy.pipeline import FlowState
from privproxy.vendors.base import Beacon, CodecError, Doc, Limits, Params

# Never to a vendor: the visitor's Host and privproxy's own hop headers toward the origin, and framing the client
# sets itself (the body may have changed).
_NOT_TO_VENDOR = frozenset({
    "host", "x-forwarded-host", "x-forwarded-proto", "x-request-id", "x-forwarded-for", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "expect",
    "proxy-authorization",
})
# What a vendor may get of the request's header fields (after the pipeline's scrubbing), all else is left out: a
# site behind HTTP authentication would otherwise hand its Authorization to the vendor with every beacon, and
# API keys or the site's own headers are no vendor's business. The Cookie is already the vendor's own cookies.
_TO_VENDOR = frozenset({
    "content-type", "content-encoding", "content-language", "accept", "accept-language", "accept-encoding",
    "user-agent", "origin", "referer", "cookie", "sec-gpc", "dnt", "sec-ch-ua", "sec-ch-ua-mobile",
    "sec-ch-ua-platform", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "cache-control", "pragma",
})
# The vendor's answer headers the browser gets: content, caching and CORS. Everything else stays with privproxy:
# the vendor's HSTS and Alt-Svc would speak for the site's own origin, Server and Via name the vendor's stack.
_FROM_VENDOR = frozenset({
    "content-type", "content-encoding", "content-language", "cache-control", "expires", "pragma", "vary", "etag",
    "last-modified", "set-cookie", "timing-allow-origin", "cross-origin-resource-policy",
})

# Headers that carry the visitor's (truncated) address, per vendor: X-Forwarded-For for every collector that
# sits behind a load balancer (all of them); Mixpanel's ingestion reads X-Real-IP (its tracking-proxy guide).
ADDRESS_HEADERS: dict[str, tuple[str, ...]] = {name: ("X-Forwarded-For",) for name in vendors.VENDORS}
ADDRESS_HEADERS["mixpanel"] = ("X-Forwarded-For", "X-Real-IP")

# httpx logs every request's URL (a beacon's whole query) at INFO: privproxy's log names no URL.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MAX_ANSWER = 1024 * 1024  # a collector's answer is a pixel or a short JSON; more is refused (too_large)


@dataclass(frozen=True, slots=True)
class VendorRequest:
    vendor: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class VendorAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    seconds: float  # from the request sent to the response headers


class VendorError(Exception):
    """The vendor did not answer usably; `reason` is a metrics.VENDOR_FAILURES value, `status` the visitor's."""

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# --- What the vendor gets -----------------------------------------------------------------------------------------


def _events(data: Any) -> list[dict[str, Any]]:
    """The event objects of a JSON beacon: one object, a list, or `{"batch": [...]}` (Segment, PostHog)."""
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        data = data["batch"]
    items = data if isinstance(data, list) else [data]
    return [x for x in items if isinstance(x, dict)]


def _add_param(p: Params, name: str, value: str) -> bool:
    if p.get(name) is not None:
        return False  # the beacon names an address already: scrubbed (truncated) by its role
    p.pairs.append([None, name, value, True])
    return True


def _fill_ga4(docs: list[Doc], addr: str, b: Beacon) -> bool:
    if b.path.endswith("/mp/collect"):
        data = docs[-1].data
        if isinstance(data, dict) and "ip_override" not in data:
            data["ip_override"] = addr
            return True
        return False
    if any(isinstance(d.data, Params) and d.data.get("_uip") is not None for d in docs):
        return False
    return _add_param(docs[0].data, "_uip", addr)  # the URL's parameters apply to every hit line


def _fill_ua(docs: list[Doc], addr: str, b: Beacon) -> bool:
    hits = [d.data for d in docs[1:] if isinstance(d.data, Params) and d.data.pairs] or [docs[0].data]
    return any([_add_param(h, "uip", addr) for h in hits])


def _fill_segment(docs: list[Doc], addr: str, b: Beacon) -> bool:
    changed = False
    for ev in _events(docs[-1].data):
        context = ev.setdefault("context", {})
        if isinstance(context, dict) and "ip" not in context:
            context["ip"] = addr
            changed = True
    return changed


def _fill_amplitude(docs: list[Doc], addr: str, b: Beacon) -> bool:
    data = docs[-1].data
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return False  # the legacy form: X-Forwarded-For only
    changed = False
    for ev in data["events"]:
        if isinstance(ev, dict) and ev.get("ip") in (None, "$remote"):  # "$remote" would be privproxy's address
            ev["ip"] = addr
            changed = True
    return changed


def _fill_posthog(docs: list[Doc], addr: str, b: Beacon) -> bool:
    data = docs[-1].data
    if isinstance(data, Params):
        return False  # base64 in a form field: X-Forwarded-For, which PostHog's capture reads
    changed = False
    for ev in _events(data):
        props = ev.setdefault("properties", {})
        if isinstance(props, dict) and "$ip" not in props:
            props["$ip"] = addr
            changed = True
    return changed


# Where each collector reads the visitor's address inside a beacon (README "What the vendor learns"); vendors not
# listed read the address headers only (ADDRESS_HEADERS).
ADDRESS_FIELDS: dict[str, Callable[[list[Doc], str, Beacon], bool]] = {
    "ga4": _fill_ga4, "universal_analytics": _fill_ua, "segment": _fill_segment, "amplitude": _fill_amplitude,
    "posthog": _fill_posthog,
}


def fill_address(vendor: str, b: Beacon, addr: str, limits: Limits) -> tuple[str, bytes] | None:
    """The beacon's (query, body) with the truncated address where the vendor reads it, or None when it names one
    already (scrubbed by its `ip` role) or the vendor reads it from the headers only. `b` is the beacon as
    scrubbed; it is decoded again by the vendor's codec and re-encoded in its own transport and encoding."""
    fill = ADDRESS_FIELDS.get(vendor)
    if fill is None or not addr:
        return None
    decoded = vendors.VENDORS[vendor].decode(b, limits)
    if not fill(decoded.docs, addr, b):
        return None
    return decoded.encode()


def vendor_request(forward: beacons.Forward, method: str, target: str, fields: Iterable[tuple[str, str]],
                   body: bytes, client: str, limits: Limits) -> VendorRequest:
    """The request the vendor's collector gets for a scrubbed beacon (as pipeline.forward_beacon made it: `target`
    in the vendor's spelling, `fields`, `body`): the collector's URL and Host, the header fields without privproxy's
    origin-bound ones, and the truncated `client` address where the vendor reads it."""
    path, _, query = target.partition("?")
    headers = []
    for k, v in fields:
        name = k.lower()
        if name in _NOT_TO_VENDOR or name not in _TO_VENDOR:
            continue
        if name == "referer":  # what the browser sends a collector on another origin: the page's origin alone
            v = referrer_origin(v)
            if not v:
                continue
        headers.append((k, v))
    if client:
        get = {k.lower(): v for k, v in headers}
        b = Beacon(method, path, query, get.get("content-type", ""), get.get("content-encoding", ""), body)
        try:
            filled = fill_address(forward.vendor, b, client, limits)
        except CodecError:  # what the codec wrote, it reads: never expected, and the scrubbed beacon is safe as is
            filled = None
        if filled is not None:
            query, body = filled
        headers += [(name, client) for name in ADDRESS_HEADERS[forward.vendor]]
    headers.insert(0, ("Host", forward.endpoint.host_header))
    url = forward.endpoint.origin + forward.target(path + (f"?{query}" if query else ""))
    return VendorRequest(forward.vendor, method, url, tuple(headers), body)


def referrer_origin(value: str) -> str:
    """`https://shop.example/account?order=9` -> `https://shop.example/` (strict-origin-when-cross-origin, the
    browsers' default toward a collector on another origin: the first-party gateway is same-origin, so the
    browser sent the whole URL); "" for anything that is no http(s) URL."""
    try:
        parts = urlsplit(value.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}{f':{port}' if port else ''}/"


def refused(forward: beacons.Forward, get_all: Callable[[str], list[str]], settings: consent.Settings,
            query: str = "") -> str | None:
    """Which of the visitor's own signals refuses this vendor's purposes (privproxy.vendor_consent), or None.
    `get_all`: the request's header values by lower-case name; `query`: the beacon's query as sent (`gpp`,
    `gpp_sid`, Consent Mode's `gcs` and `gcd`)."""
    tcf = consent.cookie_values(get_all("cookie"), settings.tcf_cookie) if settings.tcf_cookie else []
    params = parse_qs(query, keep_blank_values=True) if "gpp" in query or "gc" in query else {}
    gpp = (params["gpp"][0], ",".join(params.get("gpp_sid", []))) if params.get("gpp") else None
    # Consent Mode: any gcs/gcd on the hit that denies counts (a second spelling can only make it stricter)
    mode = frozenset().union(*(vendor_consent.consent_mode_denies(gcs, "") for gcs in params.get("gcs", [])),
                             *(vendor_consent.consent_mode_denies("", gcd) for gcd in params.get("gcd", [])))
    return vendor_consent.refusal(forward.purposes, forward.gvl_id, get_all("sec-gpc"), tcf, settings.honor_gpc, gpp,
                                  mode)


def serves_gpc_json(state: FlowState, method: str) -> bool:
    """privproxy answers `/.well-known/gpc.json` for every site while it honours Sec-GPC (consent.honor_gpc)."""
    return (state.policy.consent.honor_gpc and state.codec is None and state.target is not None
            and state.target.path == vendor_consent.GPC_JSON_PATH and method in ("GET", "HEAD"))


def answer_fields(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The vendor's answer headers the browser gets (content, caching, CORS, Set-Cookie for the rules)."""
    return [(k, v) for k, v in headers if k.lower() in _FROM_VENDOR or k.lower().startswith("access-control-")]


# --- The client ---------------------------------------------------------------------------------------------------


def tls_context(extra_ca: bytes = b"") -> ssl.SSLContext:
    """Certificates verified against the system store (OpenSSL's default paths) and `extra_ca` (PEM), host names
    checked, TLS 1.2 or newer."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Python 3.13's RFC 5280 strictness refuses certificates private CAs commonly issue (no Authority Key
    # Identifier, a non-critical basicConstraints); the chain and the host name are still verified.
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if extra_ca:
        ctx.load_verify_locations(cadata=extra_ca.decode("ascii"))
    return ctx


def no_cookie_jar() -> CookieJar:
    """A jar that keeps nothing: httpx's client would otherwise keep one visitor's vendor cookies (Set-Cookie) and
    send them with every later visitor's requests. Each request carries exactly the Cookie its visitor sent."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) or isinstance(e.__cause__, ssl.SSLError) or isinstance(e.__context__, ssl.SSLError):
        return "tls"
    if isinstance(e, httpx.ConnectError):
        return "tls" if "certificate" in str(e).lower() or "ssl" in str(e).lower() else "connect"
    return "protocol"


class VendorClient:
    """One pool of kept-alive connections to the vendors, shared by every visitor: httpx, never the environment's
    proxies or .netrc. `timeout` bounds connecting and the wait for the answer's headers (privproxy's upstream
    timeout; 0: none), then each read of the body.

    The pool runs on an event loop of its own, in one thread: httpx's transport (anyio) cannot run under the eager
    task factory mitmproxy installs on the proxy's loop (its cancel scopes are entered in one task and left in
    another), and a loop of its own keeps vendor I/O out of the proxy's loop whatever that loop's settings. Callers
    on any loop await `send` and `get`; nothing blocks them."""

    def __init__(self, extra_ca: bytes = b"", timeout: float = 60.0, max_connections: int = 100) -> None:
        self.extra_ca = extra_ca
        self.timeout = timeout
        self._max = max_connections
        self._verify = tls_context(extra_ca)  # a bad CA fails here, in the caller, not on the I/O thread
        self._client: httpx.AsyncClient | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="privproxy-vendors", daemon=True)
        self._thread.start()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the I/O loop, which its connections then belong to
            t = self.timeout if self.timeout > 0 else None
            self._client = httpx.AsyncClient(
                verify=self._verify, trust_env=False, follow_redirects=False, timeout=httpx.Timeout(t),
                cookies=no_cookie_jar(),
                limits=httpx.Limits(max_connections=self._max, max_keepalive_connections=self._max // 2))
            self._client.headers.clear()  # no python-httpx User-Agent or Accept: the request's own fields only
        return self._client

    async def _on_io_loop[R](self, coro: Coroutine[Any, Any, R]) -> R:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def send(self, req: VendorRequest, max_body: int = MAX_ANSWER) -> VendorAnswer:
        """The vendor's answer, whole (up to max_body); raises VendorError."""
        return await self._on_io_loop(self._send(req, max_body))

    async def _send(self, req: VendorRequest, max_body: int) -> VendorAnswer:
        client = self._http()
        r = client.build_request(req.method, req.url, headers=list(req.headers), content=req.body or None)
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout if self.timeout > 0 else None):
                resp = await client.send(r, stream=True)
        except TimeoutError:
            raise VendorError("timeout", 504) from None
        except httpx.TimeoutException:
            raise VendorError("timeout", 504) from None
        except (httpx.HTTPError, OSError, ssl.SSLError) as e:
            raise VendorError(_reason(e)) from None
        seconds = time.monotonic() - t0
        try:
            body = bytearray()
            async for chunk in resp.aiter_raw():
                body += chunk
                if len(body) > max_body:
                    raise VendorError("too_large")
        except httpx.TimeoutException:
            raise VendorError("timeout", 504) from None
        except httpx.HTTPError as e:
            raise VendorError(_reason(e)) from None
        finally:
            await resp.aclose()
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw)
        return VendorAnswer(resp.status_code, headers, bytes(body), seconds)

    async def get(self, url: str, headers: Iterable[tuple[str, str]], max_body: int) -> VendorAnswer:
        """A GET with only `headers` (a tracker script: no cookie, address or Referer of any visitor)."""
        host = httpx.URL(url).netloc.decode("ascii")
        return await self.send(VendorRequest("", "GET", url, (("Host", host), *headers), b""), max_body)

    def _serve(self) -> None:
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()  # its selector and wakeup pipe: a reload that replaces the pool leaks no descriptor

    async def aclose(self) -> None:
        """Close the pool's connections and stop its loop."""
        if self._client is not None:
            await self._on_io_loop(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
