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
import logging

from mitmproxy import ctx, exceptions, http

from privproxy.mitm import flowview, internals
from privproxy.outcome import Outcome

logger = logging.getLogger(__name__)

_BODY = (b"<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway Timeout</h1>"
         b"<p>The site did not answer in time. Please try again.</p>\n")
GATEWAY_TIMEOUT = (b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/html; charset=utf-8\r\n"
                   b"Cache-Control: no-store\r\nConnection: close\r\n"
                   b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class UpstreamTimeout:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.expired = 0

    def load(self, loader) -> None:
        loader.add_option("privproxy_upstream_timeout", float, 60.0,
                          "Seconds an origin has to start its answer once the request is sent; then the visitor "
                          "gets a 504 and the record says upstream_timeout. 0: wait as long as mitmproxy does.")

    def configure(self, updated) -> None:
        if "privproxy_upstream_timeout" in updated:
            seconds = ctx.options.privproxy_upstream_timeout
            if seconds < 0:
                raise exceptions.OptionsError("privproxy_upstream_timeout must be 0 (off) or a number of seconds")
            self.seconds = seconds

    def request(self, flow: http.HTTPFlow) -> None:
        # The last request hook: everything before this ran in the proxy, from here the origin has the turn.
        if self.seconds <= 0 or not flowview.awaiting_origin(flow):
            return
        loop = asyncio.get_running_loop()
        flowview.context(flow).timer = loop.call_later(self.seconds, self._expire, flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._cancel(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._cancel(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._cancel(flow)

    @staticmethod
    def _cancel(flow: http.HTTPFlow) -> None:
        c = flowview.peek(flow)
        if c is not None and c.timer is not None:
            c.timer.cancel()
            c.timer = None

    def _expire(self, flow: http.HTTPFlow) -> None:
        c = flowview.context(flow)
        c.timer = None
        if not flowview.awaiting_origin(flow):
            return
        c.outcome = Outcome.UPSTREAM_TIMEOUT  # before: the fed answer may run the response hooks at once
        if not internals.give_up_on_origin(flow, GATEWAY_TIMEOUT):  # the connection went away meanwhile
            c.outcome = None
            return
        self.expired += 1
        logger.warning("privproxy: origin did not answer within %g s; answering 504", self.seconds)
