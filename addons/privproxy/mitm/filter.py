"""PrivacyFilter: resolve the client, classify, and rewrite what the origin receives (C2, C8, C15).

mitmproxy fails open (an exception in a hook is logged and the flow goes out unchanged), so every hook here
catches its own errors and fails closed: the address headers and cookies go, whatever else failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine

from mitmproxy import http

from privproxy import pipeline
from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Outcome, Stage

logger = logging.getLogger(__name__)
_NO_STORE = {"cache-control": "no-store"}


class PrivacyFilter:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            policy = self.shared.policy
            assert policy is not None, "no policy loaded"
            view = flowview.view(flow)
            state = pipeline.begin(view, policy, self.shared.locator)
            c = flowview.context(flow)
            c.state, c.view = state, view
            flowview.apply(flow, state, view)
            if state.client is not None:
                self.shared.metrics.client(state.client)
            if flowview.answered(flow):
                return
            own = pipeline.own_answer(state)
            if own is not None:
                self.answer_here(flow, state, own)
                return
            if state.codec is None:
                flowview.stream_request_body(flow)  # only beacons are buffered
                return
            length = flowview.declared_length(flow)
            if length is not None and length > policy.beacons.limits.max_body:
                self.answer(flow, state, 413, "too_large")
        except Exception as e:  # noqa: BLE001 - fail closed: answered 500, never forwarded unread
            self.fail_closed(flow, Stage.REQUESTHEADERS, e)

    def request(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """A beacon, now fully read: forwarded scrubbed, or answered here when it cannot be decoded.

        A large body is scrubbed on a worker thread (the coroutine returned is awaited by mitmproxy, or by the
        composite addon): a linear pass over half a megabyte still takes a few hundred milliseconds, which on
        the event loop would hold up every other visitor's request (tests/e2e/test_stalls.py)."""
        c = flowview.peek(flow)
        state = c.state if c is not None else None
        if c is None or state is None or state.codec is None or flowview.answered(flow):
            return None
        try:
            body = flowview.request_body(flow)
            if len(body) > state.policy.beacons.limits.max_body:  # chunked bodies have no Content-Length
                self.answer(flow, state, 413, "too_large")
                return None
            assert c.view is not None
            if len(body) > self.OFFLOAD_BYTES:
                return self._offloaded(flow, state, c.view, body)
            self._forward(flow, state, pipeline.forward_beacon(state, c.view, body))
        except Exception as e:  # noqa: BLE001 - fail closed: the vendor gets nothing rather than the identifiers
            self._beacon_failed(flow, state, e)
        return None

    OFFLOAD_BYTES = 16 * 1024  # smaller bodies take less time than handing them to a thread

    async def _offloaded(self, flow: http.HTTPFlow, state: pipeline.FlowState, view: pipeline.RequestView,
                         body: bytes) -> None:
        try:
            out = await asyncio.to_thread(pipeline.forward_beacon, state, view, body)
            self._forward(flow, state, out)
        except Exception as e:  # noqa: BLE001 - fail closed: the vendor gets nothing rather than the identifiers
            self._beacon_failed(flow, state, e)

    def _beacon_failed(self, flow: http.HTTPFlow, state: pipeline.FlowState, e: Exception) -> None:
        self.shared.metrics.failure(Stage.BEACON)
        logger.error("privproxy: beacon filter failed (%s); answered 204 without forwarding", type(e).__name__)
        self.answer(flow, state, 204, "internal_error")

    def _forward(self, flow: http.HTTPFlow, state: pipeline.FlowState, out: pipeline.BeaconForward) -> None:
        self.shared.metrics.beacon(out.result, state.consent)
        if not out.result.forward:
            self.answer(flow, state, out.result.status, out.result.reason)
            return
        flowview.apply_beacon(flow, out)  # what goes out is what was inspected, in the vendor's spelling

    def answer(self, flow: http.HTTPFlow, state: pipeline.FlowState, status: int, reason: str) -> None:
        """Answer a beacon here without forwarding it (fail closed), and count why."""
        self.shared.metrics.beacon_refused(state.codec.name if state.codec else "unknown", reason)
        flowview.answer_here(flow, Outcome.NOT_FORWARDED, status, b"", _NO_STORE)

    def answer_here(self, flow: http.HTTPFlow, state: pipeline.FlowState, own: pipeline.Answer) -> None:
        """A request privproxy answers itself (pipeline.own_answer): never forwarded, counted, recorded."""
        if state.answer is not None:
            self.shared.metrics.refused(state.answer[1])
        elif state.redirect:
            self.shared.metrics.redirected(state.site.name)
        flowview.answer_here(flow, own.outcome, own.status, own.body, own.headers)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flowview.state_of(flow)
        if state is None or not flowview.answered(flow):
            return
        t0 = time.perf_counter()
        sent = flowview.set_cookies(flow)
        if sent:
            kept = pipeline.scrub_set_cookies(state, sent)
            if kept != sent:
                flowview.replace_set_cookies(flow, kept)
        state.filter_seconds += time.perf_counter() - t0

    def fail_closed(self, flow: http.HTTPFlow, stage: Stage, e: Exception) -> None:
        """A request privproxy could not read is not forwarded (what it forwards is what it inspected): 500,
        counted, recorded. Its address headers and cookies are removed all the same, in case anything still
        forwards it."""
        try:
            flowview.strip_identifying_headers(flow)
        finally:
            self.shared.metrics.failure(stage)
            logger.error("privproxy: %s failed (%s); answered 500, not forwarded", stage, type(e).__name__)
            flowview.answer_here(flow, Outcome.ERROR, 500, b"Internal Server Error\n",
                                 {"content-type": "text/plain", "cache-control": "no-store"})
