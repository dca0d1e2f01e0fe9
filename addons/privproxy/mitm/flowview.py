"""HTTPFlow <-> RequestView; the only module that reads or writes request fields of a flow."""

from __future__ import annotations

from mitmproxy import http

from privproxy.pipeline import FORWARD_STRIP, FlowState, RequestView


def view(flow: http.HTTPFlow) -> RequestView:
    req = flow.request
    peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
    return RequestView(
        peer=peer,
        tls=bool(flow.client_conn.tls_established),
        method=req.method,
        host=req.host_header or "",
        path=req.path,
        get_all=req.headers.get_all,
        http_version=req.http_version,
        tls_version=flow.client_conn.tls_version,
    )


def strip_address_headers(flow: http.HTTPFlow) -> None:
    headers = flow.request.headers
    for name in FORWARD_STRIP:
        if name in headers:
            del headers[name]


def apply(flow: http.HTTPFlow, state: FlowState) -> None:
    """The forwarded request: no address header as sent, only the ones privproxy computed."""
    strip_address_headers(flow)
    for name, value in state.set_headers.items():
        flow.request.headers[name] = value
    for name in state.drop_headers:
        flow.request.headers.pop(name, None)
    apply_cookie(flow, state)
    upstream = state.site.upstream
    if upstream is not None:
        host_header = flow.request.host_header
        flow.request.scheme = upstream.scheme
        flow.request.host = upstream.host  # also rewrites Host; the origin expects the visitor's
        flow.request.port = upstream.port
        flow.request.host_header = host_header


def apply_cookie(flow: http.HTTPFlow, state: FlowState) -> None:
    if state.cookie is not None:
        if state.cookie:
            flow.request.headers["cookie"] = state.cookie
        elif "cookie" in flow.request.headers:
            del flow.request.headers["cookie"]


def state_of(flow: http.HTTPFlow) -> FlowState | None:
    return flow.metadata.get("privproxy")
