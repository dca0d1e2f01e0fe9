"""EnforceHttps: HSTS and Secure cookies on every HTTPS answer (C1). The redirect of plain HTTP is one of the
proxy's own answers (pipeline.own_answer, sent by PrivacyFilter); TLS 1.2+ is set by Options.harden."""

from __future__ import annotations

import logging

from mitmproxy import http

from privproxy import https as core
from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Stage

logger = logging.getLogger(__name__)


def hsts_for(shared: SharedState, flow: http.HTTPFlow | None, tls: bool) -> str | None:
    """The HSTS value for an answer the proxy makes itself (errors, refusals): by what the flow was classified as
    (HTTPS, also behind a trusted TLS-terminating balancer), else by the connection. RFC 6797 §7.2: never over
    plain HTTP."""
    state = flowview.state_of(flow) if flow is not None else None
    if state is not None:
        return state.policy.https.hsts if state.https else None
    return shared.policy.https.hsts if tls and shared.policy is not None else None


class EnforceHttps:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flowview.state_of(flow)
        if state is None or not flowview.answered(flow):
            return
        try:
            if state.https:
                self.secure(flow, state.policy.https)
        except Exception:  # noqa: BLE001 - counted; the answer goes out with the origin's headers
            self.shared.metrics.failure(Stage.HTTPS_HEADERS)

    def response(self, flow: http.HTTPFlow) -> None:
        # Responses privproxy or mitmproxy made itself (errors) have no responseheaders event.
        if flowview.answered(flow) and not flowview.has_hsts(flow):
            self.responseheaders(flow)

    @staticmethod
    def secure(flow: http.HTTPFlow, settings: core.Settings) -> None:
        """HSTS (replacing the origin's), and Secure on every cookie."""
        flowview.secure_response(flow, settings.hsts, core.with_secure if settings.secure_cookies else None)
