"""PrivacyFilter: resolve the client, classify, and rewrite what the origin receives (C2, C8, C15).

mitmproxy fails open (an exception in a hook is logged and the flow goes out unchanged), so every hook here
catches its own errors and fails closed: the address headers and cookies go, whatever else failed.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import http

from privproxy import pipeline
from privproxy.mitm import flowview
from privproxy.mitm.runtime import Runtime

logger = logging.getLogger(__name__)


class PrivacyFilter:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            policy = self.rt.policy
            assert policy is not None, "no policy loaded"
            view = flowview.view(flow)
            state = pipeline.begin(view, policy, self.rt.locator)
            flow.metadata["privproxy"] = state
            flow.metadata["privproxy_view"] = view
            flowview.apply(flow, state)
            client = state.client
            if client is not None:
                self.rt.metrics.truncations.labels(client.family).inc()
                if client.ignored_headers:
                    self.rt.metrics.forwarding_ignored.labels("untrusted_peer").inc()
                if client.malformed:
                    self.rt.metrics.forwarding_ignored.labels("malformed").inc()
            if not flow.response:
                # Ordinary bodies stream through untouched; only beacon endpoints (issue 4) are buffered.
                flow.request.stream = True
        except Exception as e:
            self.fail_closed(flow, "requestheaders", e)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flowview.state_of(flow)
        if state is None or flow.response is None:
            return
        t0 = time.perf_counter()
        sent = flow.response.headers.get_all("set-cookie")
        if sent:
            kept = pipeline.scrub_set_cookies(state, sent)
            if kept != sent:
                flow.response.headers.set_all("set-cookie", kept)
        state.filter_seconds += time.perf_counter() - t0

    def fail_closed(self, flow: http.HTTPFlow, stage: str, e: Exception) -> None:
        try:
            flowview.strip_address_headers(flow)
            flow.request.headers.pop("cookie", None)
        finally:
            self.rt.metrics.failures.labels(stage).inc()
            logger.error("privproxy: %s failed (%s); the request was forwarded without address headers or cookies",
                         stage, type(e).__name__)
            flow.metadata.setdefault("privproxy_started", time.time())
