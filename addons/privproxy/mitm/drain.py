"""Drain: on SIGTERM stop accepting connections, let requests in flight finish, then stop (C2: every
answered request keeps its log record; no visitor gets a cut-off answer during a deploy or scale-down)."""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import http

from privproxy.mitm import flowview, internals

logger = logging.getLogger(__name__)


class Drain:
    def __init__(self) -> None:
        self.inflight = 0

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.inflight += 1
        flowview.context(flow).inflight = True

    def _finished(self, flow: http.HTTPFlow) -> None:
        c = flowview.peek(flow)
        if c is not None and c.inflight:
            c.inflight = False
            self.inflight -= 1

    def response(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    async def drain(self, master, timeout: float) -> None:
        """Close the listening sockets, wait until nothing is in flight (at most `timeout` s), then shut down."""
        try:
            await internals.stop_listening(master)
        except Exception as e:  # noqa: BLE001 - stopping to listen must never prevent the shutdown itself
            logger.error("privproxy: could not stop listening (%s)", type(e).__name__)
        deadline = time.monotonic() + timeout
        while self.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.inflight:
            logger.warning("privproxy: shutting down with %d requests still in flight after %.0f s",
                           self.inflight, timeout)
        master.shutdown()
