"""EnforceHttps: HSTS and Secure cookies on every HTTPS answer (C1). The redirect of plain HTTP is one of the
proxy's own answers (pipeline.own_answer, sent by PrivacyFilter); TLS 1.2+ is set by Options.harden."""

from __future__ import annotations

import logging

from mitmproxy import http

from privproxy import https as core
from privproxy.mitm import flowview
from privproxy.mitm.runtime import Runtime

logger = logging.getLogger(__name__)


def hsts_for(rt: Runtime, flow: http.HTTPFlow | None, tls: bool) -> str | None:
    """The HSTS value for an answer the proxy makes itself (errors, refusals): by what the flow was classified as
    (HTTPS, also behind a trusted TLS-terminating balancer), else by the connection. RFC 6797 §7.2: never over
    plain HTTP."""
    state = flowview.state_of(flow) if flow is not None else None
    if state is not None:
        return state.policy.https.hsts if state.https else None
    return rt.policy.https.hsts if tls and rt.policy is not None else None


class EnforceHttps:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flowview.state_of(flow)
        if state is None or flow.response is None:
            return
        try:
            if state.https:
                self.secure(flow.response, state.policy.https)
        except Exception:  # noqa: BLE001 - counted; the answer goes out with the origin's headers
            self.rt.metrics.failures.labels("https_headers").inc()

    def response(self, flow: http.HTTPFlow) -> None:
        # Responses privproxy or mitmproxy made itself (errors) have no responseheaders event.
        if flow.response is not None and "strict-transport-security" not in flow.response.headers:
            self.responseheaders(flow)

    @staticmethod
    def secure(resp: http.Response, settings: core.Settings) -> None:
        """HSTS (replacing the origin's), and Secure on every cookie; one pass over the header list."""
        fields = []
        for k, v in resp.headers.fields:
            name = k.lower()
            if name == b"strict-transport-security":
                continue
            if name == b"set-cookie" and settings.secure_cookies:
                v = core.with_secure(v.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
            fields.append((k, v))
        fields.append((b"Strict-Transport-Security", settings.hsts.encode()))
        resp.headers.fields = tuple(fields)
