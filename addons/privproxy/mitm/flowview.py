"""HTTPFlow <-> RequestView; the only module that reads or writes request fields of a flow."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from privproxy.pipeline import FORWARD_STRIP, FlowState, RequestView


def header_index(headers: http.Headers) -> Callable[[str], list[str]]:
    """get_all over one dict built in a single pass: mitmproxy's Headers scan and lower-case every field on
    each lookup, and the pipeline looks up a dozen names per request."""
    index: dict[str, list[str]] = {}
    for k, v in headers.fields:
        index.setdefault(k.decode("latin-1").lower(), []).append(v.decode("utf-8", "surrogateescape"))

    def get_all(name: str) -> list[str]:
        return index.get(name, [])

    return get_all


def view(flow: http.HTTPFlow) -> RequestView:
    req = flow.request
    peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
    return RequestView(
        peer=peer,
        tls=bool(flow.client_conn.tls_established),
        method=req.method,
        host=req.host_header or "",
        path=req.path,
        get_all=header_index(req.headers),
        http_version=req.http_version,
        tls_version=flow.client_conn.tls_version,
    )


def _fields_without(headers: http.Headers, names: frozenset[str] | set[str]) -> list[tuple[bytes, bytes]]:
    # One pass over the fields as sent: mitmproxy's Headers rescan and lower-case every field on each lookup.
    return [(k, v) for k, v in headers.fields if k.lower().decode("latin-1") not in names]


def strip_address_headers(flow: http.HTTPFlow) -> None:
    flow.request.headers.fields = tuple(_fields_without(flow.request.headers, FORWARD_STRIP))


_STRIP_WITH_COOKIE = FORWARD_STRIP | {"cookie"}


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")  # as mitmproxy's Headers do


def apply(flow: http.HTTPFlow, state: FlowState) -> None:
    """The forwarded request: no address header as sent, only the ones privproxy computed.

    The header list is rebuilt in one pass, not by a dozen assignments: this runs on every request."""
    remove = FORWARD_STRIP if state.cookie is None else _STRIP_WITH_COOKIE
    if state.drop_headers:
        remove = remove | set(state.drop_headers)
    fields = _fields_without(flow.request.headers, remove)
    fields += [(name.encode(), _encode(value)) for name, value in state.set_headers.items()]
    if state.cookie:
        fields.append((b"cookie", _encode(state.cookie)))
    flow.request.headers.fields = tuple(fields)
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
