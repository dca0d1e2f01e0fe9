"""A mitmproxy flow dump (`mitmdump -w FILE`) read as explain Samples: for `explain --flows` and `tune`."""

from __future__ import annotations

from collections.abc import Iterator

from mitmproxy import http, io

from privproxy.explain import Sample


def samples(path: str) -> Iterator[Sample]:
    """Each HTTP request of the dump as the visitor sent it: over TLS or not (the client connection, not the
    upstream's scheme), to the Host it named, the target as sent, with its response's Set-Cookie headers."""
    with open(path, "rb") as f:
        for flow in io.FlowReader(f).stream():
            if not isinstance(flow, http.HTTPFlow):
                continue
            resp, req = flow.response, flow.request
            scheme = "https" if flow.client_conn.tls_established else "http"
            yield Sample(
                req.method, f"{scheme}://{req.host_header or req.pretty_host}{req.path}",
                tuple(req.headers.items(multi=True)),
                tuple(resp.headers.get_all("set-cookie")) if resp is not None else (),
                req.raw_content or b"")
