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
            flowview.apply(flow, state, view)
            client = state.client
            if client is not None:
                self.rt.metrics.truncations.labels(client.family).inc()
                if client.ignored_headers:
                    self.rt.metrics.forwarding_ignored.labels("untrusted_peer").inc()
                if client.malformed:
                    self.rt.metrics.forwarding_ignored.labels("malformed").inc()
            if flow.response:
                return
            own = pipeline.own_answer(state)
            if own is not None:
                self.answer_here(flow, state, own)
                return
            if state.codec is None:
                # Ordinary bodies stream through untouched; only beacons are buffered. A request without a body
                # (most of them) is not put in streaming mode, which would cost an extra write upstream.
                headers = flow.request.headers
                if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0"):
                    flow.request.stream = True
                return
            length = flow.request.headers.get("content-length", "")
            limit = policy.beacons.limits.max_body
            if length.strip().isdigit() and int(length) > limit:
                self.answer(flow, state, 413, "too_large")
        except Exception as e:  # noqa: BLE001 - fail closed: answered 500, never forwarded unread
            self.fail_closed(flow, "requestheaders", e)

    def request(self, flow: http.HTTPFlow) -> None:
        """A beacon, now fully read: forwarded scrubbed, or answered here when it cannot be decoded."""
        state = flowview.state_of(flow)
        if state is None or state.codec is None or flow.response is not None:
            return
        try:
            req = flow.request
            body = req.raw_content or b""
            if len(body) > state.policy.beacons.limits.max_body:  # chunked bodies have no Content-Length
                self.answer(flow, state, 413, "too_large")
                return
            view = flow.metadata["privproxy_view"]
            out = pipeline.forward_beacon(state, view, body)
            result = out.result
            m = self.rt.metrics
            m.beacons.labels(result.vendor, "given" if state.consent else "none").inc()
            if result.unclassified:
                m.unclassified.labels(result.vendor).inc(result.unclassified)
            for reason in result.field_errors:
                m.beacon_failures.labels(result.vendor, reason).inc()
            if not result.forward:
                self.answer(flow, state, result.status, result.reason)
                return
            flowview.apply_beacon(flow, out)  # what goes out is what was inspected, in the vendor's spelling
        except Exception as e:  # noqa: BLE001 - fail closed: the vendor gets nothing rather than the identifiers
            self.rt.metrics.failures.labels("beacon").inc()
            logger.error("privproxy: beacon filter failed (%s); answered 204 without forwarding", type(e).__name__)
            self.answer(flow, state, 204, "internal_error")

    def answer(self, flow: http.HTTPFlow, state: pipeline.FlowState, status: int, reason: str) -> None:
        """Answer a beacon here without forwarding it (fail closed), and count why."""
        vendor = state.codec.name if state.codec else "unknown"
        self.rt.metrics.beacon_failures.labels(vendor, reason or "unknown").inc()
        flow.metadata["privproxy_outcome"] = "not_forwarded"
        flow.response = http.Response.make(status, b"", {"cache-control": "no-store"})
        flow.request.stream = False

    def answer_here(self, flow: http.HTTPFlow, state: pipeline.FlowState, own: pipeline.Answer) -> None:
        """A request privproxy answers itself (pipeline.own_answer): never forwarded, counted, recorded."""
        if state.answer is not None:
            self.rt.metrics.refused.labels(state.answer[1]).inc()
        elif state.redirect:
            self.rt.metrics.redirects.labels(state.site.name).inc()
        flow.metadata["privproxy_outcome"] = own.outcome
        flow.response = http.Response.make(own.status, own.body, dict(own.headers))
        flow.request.stream = False

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
        """A request privproxy could not read is not forwarded (what it forwards is what it inspected): 500,
        counted, recorded. Its address headers and cookies are removed all the same, in case anything still
        forwards it."""
        try:
            flowview.strip_address_headers(flow)
            flow.request.headers.pop("cookie", None)
        finally:
            self.rt.metrics.failures.labels(stage).inc()
            logger.error("privproxy: %s failed (%s); answered 500, not forwarded", stage, type(e).__name__)
            flow.metadata["privproxy_outcome"] = "error"
            flow.response = http.Response.make(500, b"Internal Server Error\n",
                                               {"content-type": "text/plain", "cache-control": "no-store"})
            flow.request.stream = False
