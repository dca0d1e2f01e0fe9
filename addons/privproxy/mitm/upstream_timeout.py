"""Upstream timeout: an origin that does not start its answer in time is given up on, and the visitor gets a
clean 504 instead of a hung request (C15: the proxy stays available; C3: the record says why).

mitmproxy has no read timeout for server connections (only a ten-minute idle timeout on the client side).
When the time to response headers runs out, the proxy answers in the origin's place: a `504 Gateway Timeout`
with `Connection: close` is fed to mitmproxy as the server connection's data, so it travels the normal path
(response hooks, HSTS, the access-log record with outcome `upstream_timeout`, TLS or HTTP/2 to the visitor)
and mitmproxy then closes that connection, so a late answer is never read. An HTTP/2 origin connection
cannot take HTTP/1 bytes: there the connection is closed instead, and mitmproxy answers its own 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mitmproxy import ctx, exceptions, http

from privproxy.mitm import flowview, internals
from privproxy.outcome import Outcome

logger = logging.getLogger(__name__)

# How often the expired requests are looked for (at most; a tenth of a shorter timeout, and at least every
# MIN_TICK): an origin's time runs out up to this much after the option says.
TICK = 0.25
MIN_TICK = 0.005

_BODY = (b"<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway Timeout</h1>"
         b"<p>The site did not answer in time. Please try again.</p>\n")
GATEWAY_TIMEOUT = (b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/html; charset=utf-8\r\n"
                   b"Cache-Control: no-store\r\nConnection: close\r\n"
                   b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class UpstreamTimeout:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.expired = 0
        # Flows whose origin has the turn, by id, in the order sent: (deadline, flow). One sweep a tick looks for
        # the expired ones; a timer per request (a TimerHandle pushed on the loop's heap and cancelled at the
        # answer) was about 1 % of a beacon's CPU. While the timeout stays the same the order sent is the order
        # of the deadlines, so a sweep stops at the first one still to come; after a change, until the last
        # deadline of a flow sent before it has passed, it reads them all.
        self._waiting: dict[str, tuple[float, http.HTTPFlow]] = {}
        self._unordered_until = 0.0
        self._sweeping: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def load(self, loader) -> None:
        loader.add_option("privproxy_upstream_timeout", float, 60.0,
                          "Seconds an origin has to start its answer once the request is sent; then the visitor "
                          "gets a 504 and the record says upstream_timeout. 0: wait as long as mitmproxy does.")

    def configure(self, updated) -> None:
        if "privproxy_upstream_timeout" in updated:
            seconds = ctx.options.privproxy_upstream_timeout
            if seconds < 0:
                raise exceptions.OptionsError("privproxy_upstream_timeout must be 0 (off) or a number of seconds")
            changed = seconds != self.seconds and self._waiting
            if changed:
                self._unordered_until = max(deadline for deadline, _ in self._waiting.values())
            self.seconds = seconds
            if changed and self._sweeping is not None and self._loop is not None:  # the next sweep at the new tick
                self._schedule(self._loop)

    def request(self, flow: http.HTTPFlow) -> None:
        # The last request hook: everything before this ran in the proxy, from here the origin has the turn.
        if self.seconds <= 0 or not flowview.awaiting_origin(flow):
            return
        self._waiting[flow.id] = (time.monotonic() + self.seconds, flow)
        if self._sweeping is None or self._loop is not asyncio.get_running_loop():
            self._schedule()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._waiting.pop(flow.id, None)

    def response(self, flow: http.HTTPFlow) -> None:
        self._waiting.pop(flow.id, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self._waiting.pop(flow.id, None)

    def done(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
        self._sweeping = self._loop = None
        self._waiting.clear()

    def deadline(self, flow: http.HTTPFlow) -> float | None:
        """When (time.monotonic) the origin's time for this flow runs out; None when it is not waited for."""
        waiting = self._waiting.get(flow.id)
        return waiting[0] if waiting is not None else None

    def _tick(self, seconds: float | None = None) -> float:
        seconds = self.seconds if seconds is None else seconds
        return max(MIN_TICK, min(TICK, seconds / 10)) if seconds > 0 else TICK

    def _schedule(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """The next sweep, a tick from now, on `loop` (the running one by default), in place of any scheduled."""
        if self._sweeping is not None:  # of a loop that has ended (tests run several), or a tick that changed
            with contextlib.suppress(RuntimeError):
                self._sweeping.cancel()
        self._loop = loop or asyncio.get_running_loop()
        self._sweeping = self._loop.call_later(self._tick(), self._sweep)

    def _due(self, now: float) -> list[tuple[str, http.HTTPFlow]]:
        due = []
        in_order = now > self._unordered_until
        for fid, (deadline, flow) in self._waiting.items():
            if deadline <= now:
                due.append((fid, flow))
            elif in_order:
                break
        return due

    def _sweep(self) -> None:
        self._sweeping = None
        try:
            for fid, flow in self._due(time.monotonic()):
                if self._waiting.pop(fid, None) is None:  # answered meanwhile (an earlier one closed its connection)
                    continue
                try:
                    self._expire(flow)
                except Exception as e:  # noqa: BLE001 - one flow's failure must not stop the others' timeouts
                    logger.error("privproxy: upstream timeout failed (%s)", type(e).__name__)
        finally:
            if self._waiting and self._sweeping is None:  # (an expiry may have sent a request that scheduled one)
                self._schedule()

    def _expire(self, flow: http.HTTPFlow) -> None:
        c = flowview.context(flow)
        if not flowview.awaiting_origin(flow):
            return
        c.outcome = Outcome.UPSTREAM_TIMEOUT  # before: the fed answer may run the response hooks at once
        if not internals.give_up_on_origin(flow, GATEWAY_TIMEOUT):  # the connection went away meanwhile
            c.outcome = None
            return
        self.expired += 1
        logger.warning("privproxy: origin did not answer within %g s; answering 504", self.seconds)
