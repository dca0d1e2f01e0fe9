"""HTTPFlow <-> RequestView; the only module that reads or writes request fields of a flow."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from privproxy.pipeline import FORWARD_STRIP, BeaconForward, FlowState, RequestView, forward_fields


def header_index(headers: http.Headers) -> tuple[Callable[[str], list[str]], tuple[tuple[str, str], ...]]:
    """get_all (lower-case names) over one dict built in a single pass, and the fields as sent, (name, value):
    mitmproxy's Headers scan and lower-case every field on each lookup, and the pipeline looks up a dozen
    names per request."""
    index: dict[str, list[str]] = {}
    fields = []
    for k, v in headers.fields:
        name, value = k.decode("latin-1"), v.decode("utf-8", "surrogateescape")
        index.setdefault(name.lower(), []).append(value)
        fields.append((name, value))

    def get_all(name: str) -> list[str]:
        return index.get(name, [])

    return get_all, tuple(fields)


def view(flow: http.HTTPFlow) -> RequestView:
    req = flow.request
    peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
    get_all, fields = header_index(req.headers)
    return RequestView(
        peer=peer,
        tls=bool(flow.client_conn.tls_established),
        method=req.method,
        host=req.host_header or "",
        path=req.path,
        get_all=get_all,
        http_version=req.http_version,
        tls_version=flow.client_conn.tls_version,
        fields=fields,
        authority=req.authority,
    )


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")  # as mitmproxy's Headers do


def set_fields(headers: http.Headers, fields: list[tuple[str, str]]) -> None:
    """Replace the whole header list in one assignment (mitmproxy rescans it on every single-field change)."""
    headers.fields = tuple((k.encode("latin-1"), _encode(v)) for k, v in fields)


def strip_address_headers(flow: http.HTTPFlow) -> None:
    """The fail-closed fallback: every header that could name the client, by name."""
    fields = [(k, v) for k, v in flow.request.headers.fields if k.lower().decode("latin-1") not in FORWARD_STRIP]
    flow.request.headers.fields = tuple(fields)


def apply(flow: http.HTTPFlow, state: FlowState, view: RequestView) -> None:
    """The forwarded request head (pipeline.forward_fields), the target in origin-form and the Host in
    their canonical spelling."""
    req = flow.request
    set_fields(req.headers, forward_fields(state, view.fields))
    if state.forward_target is not None:
        req.path = state.forward_target
    if req.authority and req.http_version.startswith("HTTP/1"):
        req.authority = ""  # an absolute-form target goes upstream in origin-form, its host in Host
    host_header = state.host or req.host_header
    upstream = state.site.upstream
    if upstream is not None:
        req.scheme = upstream.scheme
        req.host = upstream.host  # also rewrites Host; the origin expects the visitor's
        req.port = upstream.port
    if host_header and (upstream is not None or host_header != req.host_header):
        req.host_header = host_header


def apply_beacon(flow: http.HTTPFlow, out: BeaconForward) -> None:
    """A scrubbed beacon: target, header fields and body exactly as pipeline.forward_beacon made them."""
    req = flow.request
    req.path = out.target
    set_fields(req.headers, out.fields)
    req.raw_content = out.body


def state_of(flow: http.HTTPFlow) -> FlowState | None:
    return flow.metadata.get("privproxy")
