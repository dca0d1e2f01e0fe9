"""HTTPFlow <-> RequestView, and the one FlowContext privproxy keeps per flow.

The only module of privproxy's addons that reads or writes a flow's fields or its metadata: the addons read
and set what they need through the functions below. (The guarded HTTP layer in `internals` builds and ends
flows as mitmproxy's own layer does; what it notes for the record goes into the FlowContext too.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mitmproxy import http

from privproxy.access_log.record import LogRecord
from privproxy.outcome import Outcome
from privproxy.pipeline import FORWARD_STRIP, BeaconForward, FlowState, RequestView, forward_fields

KEY = "privproxy"  # the flow.metadata key of the FlowContext: the only one privproxy uses


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What the visitor got when a flow ended in mitmproxy's `error` hook, for its log record."""

    status: int
    outcome: Outcome  # bad_request | head_too_large | head_timeout | too_large | client_closed | upstream_error


class ByteCounter:
    """A response stream callable: passes chunks through and counts them for the log's size field."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.n += len(chunk)
        return chunk


@dataclass(slots=True)
class FlowContext:
    """Everything privproxy's addons pass each other about one flow."""

    state: FlowState | None = None  # what the pipeline decided, pinned to the Policy that decided it
    view: RequestView | None = None  # the request head as it arrived, as the pipeline read it
    outcome: Outcome | None = None  # set by whoever answered in the origin's place; wins over the derived one
    answer: ErrorAnswer | None = None  # what the guarded HTTP layer answered, when the flow ends in `error`
    counter: ByteCounter | None = None  # a streamed response's bytes, for the record's size
    record: LogRecord | None = None  # the access-log record, once made (metrics read it)
    logged: bool = False  # one record per flow, whichever hooks follow
    observed: bool = False  # one observation per flow
    inflight: bool = False  # counted by Drain until the flow ends
    sent: float = 0.0  # when the request went upstream (time.time()), until its response headers: metrics
    gauged: bool = False  # counted in privproxy_requests_in_flight until the flow ends


def context(flow: http.HTTPFlow) -> FlowContext:
    """The flow's FlowContext, made on first use."""
    c = flow.metadata.get(KEY)
    if c is None:
        c = flow.metadata[KEY] = FlowContext()
    return c


def peek(flow: http.HTTPFlow) -> FlowContext | None:
    """The flow's FlowContext, or None when no addon has made one."""
    return flow.metadata.get(KEY)


def state_of(flow: http.HTTPFlow) -> FlowState | None:
    c = flow.metadata.get(KEY)
    return c.state if c is not None else None


def outcome_of(flow: http.HTTPFlow) -> Outcome | None:
    """The outcome set by whoever answered in the origin's place (None: the record derives it)."""
    c = flow.metadata.get(KEY)
    return c.outcome if c is not None else None


def error_answer(flow: http.HTTPFlow) -> ErrorAnswer | None:
    """The answer behind a flow's `error` hook, when the guarded layer saw what caused it; None otherwise."""
    c = flow.metadata.get(KEY)
    return c.answer if c is not None else None


# --- The request --------------------------------------------------------------------------------------------------


def header_index(headers: http.Headers) -> tuple[dict[str, list[str]], tuple[tuple[str, str], ...]]:
    """The values of each field by lower-case name, in one dict built in a single pass, and the fields as sent,
    (name, value): mitmproxy's Headers scan and lower-case every field on each lookup, and the pipeline looks up
    a dozen names per request."""
    index: dict[str, list[str]] = {}
    fields = []
    for k, v in headers.fields:
        name, value = k.decode("latin-1"), v.decode("utf-8", "surrogateescape")
        index.setdefault(name.lower(), []).append(value)
        fields.append((name, value))
    return index, tuple(fields)


def _host(req: http.Request, values: list[str]) -> str | None:
    if req.is_http2 or req.is_http3:
        authority = req.authority
        if authority:
            return authority
    return (values[0] if len(values) == 1 else ", ".join(values)) if values else None


def host_header(req: http.Request, fields: Iterable[tuple[str, str]]) -> str | None:
    """req.host_header of the request with these header fields: HTTP/2's and 3's :authority, else the Host fields'
    values joined by ", " (Headers.get), None without any. mitmproxy's own lookup converts and lower-cases every
    field, twice per request (tests/mitm/test_flowview.py holds the two equal)."""
    return _host(req, [v for k, v in fields if k.lower() == "host"])


def view(flow: http.HTTPFlow) -> RequestView:
    req = flow.request
    peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
    index, fields = header_index(req.headers)

    def get_all(name: str) -> list[str]:
        return index.get(name, [])

    return RequestView(
        peer=peer,
        tls=bool(flow.client_conn.tls_established),
        method=req.method,
        host=_host(req, index.get("host", [])) or "",
        path=req.path,
        get_all=get_all,
        http_version=req.http_version,
        tls_version=flow.client_conn.tls_version,
        fields=fields,
        authority=req.authority,
        index=index,
    )


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")  # as mitmproxy's Headers do


def field_value(headers: http.Headers, name: bytes) -> str | None:
    """headers.get(name): the values of every field of that (lower-case) name joined by ", ", None when there is
    none, in one pass over the fields; mitmproxy's lookup converts and lower-cases every field on each call
    (3.9 against 1.1 us, and a request and its answer are looked up half a dozen times)."""
    found = [v for k, v in headers.fields if k.lower() == name]
    if not found:
        return None
    return found[0].decode("utf-8", "surrogateescape") if len(found) == 1 else \
        ", ".join(v.decode("utf-8", "surrogateescape") for v in found)


def set_fields(headers: http.Headers, fields: Iterable[tuple[str, str]]) -> None:
    """Replace the whole header list in one assignment (mitmproxy rescans it on every single-field change)."""
    headers.fields = tuple([(k.encode("latin-1"), _encode(v)) for k, v in fields])


def strip_identifying_headers(flow: http.HTTPFlow) -> None:
    """The fail-closed fallback: every header that could name the client (by name), and the Cookie."""
    flow.request.headers.fields = tuple((k, v) for k, v in flow.request.headers.fields
                                        if k.lower().decode("latin-1") not in FORWARD_STRIP)
    flow.request.headers.pop("cookie", None)


def apply(flow: http.HTTPFlow, state: FlowState, view: RequestView) -> None:
    """The forwarded request head (pipeline.forward_fields), the target in origin-form and the Host in
    their canonical spelling."""
    req = flow.request
    fields = forward_fields(state, view.fields)
    set_fields(req.headers, fields)
    if state.forward_target is not None:
        req.path = state.forward_target
    if req.authority and req.http_version.startswith("HTTP/1"):
        req.authority = ""  # an absolute-form target goes upstream in origin-form, its host in Host
    sent = host_header(req, fields)
    host = state.host or sent
    upstream = state.site.upstream
    if upstream is not None:
        req.scheme = upstream.scheme
        req.host = upstream.host  # also rewrites Host; the origin expects the visitor's
        req.port = upstream.port
    if host and (upstream is not None or host != sent):
        req.host_header = host


def apply_beacon(flow: http.HTTPFlow, out: BeaconForward) -> None:
    """A scrubbed beacon: target, header fields and body exactly as pipeline.forward_beacon made them."""
    req = flow.request
    req.path = out.target
    set_fields(req.headers, out.fields)
    req.raw_content = out.body


def stream_request_body(flow: http.HTTPFlow) -> None:
    """Ordinary bodies stream through untouched; a request without a body (most of them) is not put in streaming
    mode, which would cost an extra write upstream."""
    headers = flow.request.headers
    if field_value(headers, b"transfer-encoding") is not None or \
            (field_value(headers, b"content-length") or "0").strip() not in ("", "0"):
        flow.request.stream = True


def declared_length(flow: http.HTTPFlow) -> int | None:
    """The request's Content-Length, when it is a number."""
    length = (field_value(flow.request.headers, b"content-length") or "").strip()
    return int(length) if length.isdigit() else None


def request_body(flow: http.HTTPFlow) -> bytes:
    return flow.request.raw_content or b""


# --- The answer ---------------------------------------------------------------------------------------------------


def answered(flow: http.HTTPFlow) -> bool:
    """A response exists: the origin's, or one the proxy made."""
    return flow.response is not None


def close_after_answer(flow: http.HTTPFlow) -> None:
    """The answer closes its HTTP/1 connection after it (`Connection: close`; mitmproxy's HTTP/1 layer reads the
    field when the exchange is done). HTTP/2 and 3 forbid the field, and a 101 keeps its connection."""
    r = flow.response
    if r is not None and r.status_code != 101 and flow.request.http_version.startswith("HTTP/1"):
        r.headers["connection"] = "close"


def awaiting_origin(flow: http.HTTPFlow) -> bool:
    """The request has gone to the origin (or is about to) and nothing has answered it yet."""
    return flow.response is None and flow.live


def answer_here(flow: http.HTTPFlow, outcome: Outcome, status: int, body: bytes,
                headers: dict[str, str] | Iterable[tuple[str, str]]) -> None:
    """The proxy answers in the origin's place: never forwarded, and the record says why."""
    context(flow).outcome = outcome
    flow.response = http.Response.make(status, body, dict(headers))
    flow.request.stream = False


def answer_as_received(flow: http.HTTPFlow, outcome: Outcome, status: int, fields: Iterable[tuple[str, str]],
                       raw_body: bytes) -> None:
    """An answer another server made (a vendor's, through privproxy.gateway): its header fields in order, repeated
    ones kept (Set-Cookie), and its body as received (still in its Content-Encoding)."""
    context(flow).outcome = outcome
    resp = http.Response.make(status, b"", [(k.encode("latin-1"), _encode(v)) for k, v in fields])
    resp.raw_content = raw_body
    resp.headers["content-length"] = str(len(raw_body))
    flow.response = resp
    flow.request.stream = False


def method(flow: http.HTTPFlow) -> str:
    return flow.request.method


def outgoing(flow: http.HTTPFlow) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """The request as it would go upstream now: method, target, header fields, body (after apply_beacon)."""
    req = flow.request
    fields = [(k.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for k, v in req.headers.fields]
    return req.method, req.path, fields, req.raw_content or b""


def set_outcome(flow: http.HTTPFlow, outcome: Outcome | None) -> None:
    context(flow).outcome = outcome


def set_cookies(flow: http.HTTPFlow) -> list[str]:
    """The response's Set-Cookie values."""
    assert flow.response is not None
    # Headers.get_all, in one pass (it converts and lower-cases every field)
    return [v.decode("utf-8", "surrogateescape") for k, v in flow.response.headers.fields if k.lower() == b"set-cookie"]


def replace_set_cookies(flow: http.HTTPFlow, kept: list[str]) -> None:
    assert flow.response is not None
    flow.response.headers.set_all("set-cookie", kept)


def has_hsts(flow: http.HTTPFlow) -> bool:
    return flow.response is not None and field_value(flow.response.headers, b"strict-transport-security") is not None


def secure_response(flow: http.HTTPFlow, hsts: str, secure_cookie: Callable[[str], str] | None) -> None:
    """HSTS (replacing the origin's), and `secure_cookie` applied to every Set-Cookie; one pass over the fields."""
    resp = flow.response
    assert resp is not None
    fields = []
    for k, v in resp.headers.fields:
        name = k.lower()
        if name == b"strict-transport-security":
            continue
        if name == b"set-cookie" and secure_cookie is not None:
            v = _encode(secure_cookie(v.decode("utf-8", "surrogateescape")))
        fields.append((k, v))
    fields.append((b"Strict-Transport-Security", hsts.encode()))
    resp.headers.fields = tuple(fields)


def count_response(flow: http.HTTPFlow, buffer_limit: int) -> None:
    """Large or unsized bodies stream through, counted as they pass; small ones (a Content-Length up to
    `buffer_limit`) are buffered by mitmproxy and sent in one write, which is cheaper than streaming them."""
    resp = flow.response
    if resp is None or resp.stream:
        return
    length = field_value(resp.headers, b"content-length") or ""
    if length.isdigit() and int(length) <= buffer_limit:
        return
    counter = ByteCounter()
    resp.stream = counter
    context(flow).counter = counter


def response_status(flow: http.HTTPFlow) -> int:
    assert flow.response is not None
    return flow.response.status_code


def streamed_bytes(flow: http.HTTPFlow) -> int | None:
    """Bytes of a streamed answer counted so far; None when it was not streamed."""
    c = flow.metadata.get(KEY)
    return c.counter.n if c is not None and c.counter is not None else None


def response_size(flow: http.HTTPFlow) -> int:
    """Bytes of the answer's body: counted when streamed, else the buffered body."""
    n = streamed_bytes(flow)
    if n is not None:
        return n
    assert flow.response is not None
    return len(flow.response.raw_content or b"")


def failed(flow: http.HTTPFlow) -> bool:
    """mitmproxy noted an error on the flow (the origin or the client went away, a protocol error)."""
    return flow.error is not None


def ended(flow: http.HTTPFlow) -> float:
    """When the answer ended: the response's last byte, else now."""
    return flow.response.timestamp_end if flow.response and flow.response.timestamp_end else time.time()
