"""Drain: on SIGTERM stop accepting connections, let requests in flight finish, then stop (C2: every
answered request keeps its log record; no visitor gets a cut-off answer during a deploy or scale-down).

Connections already open when the drain starts are not cut while they may still carry a request: every answer
from then on closes its HTTP/1 connection after it (`Connection: close`), and a connection with nothing in flight
is closed by the proxy once it has been idle for IDLE_GRACE seconds of the drain, as nginx closes idle keep-alive
connections at a graceful shutdown. The proxy stops when no client connection is left (or at the timeout).
Stopping as soon as nothing was in flight instead cut a request that arrived on an open connection a moment later
(its TLS handshake just done, or a kept-alive client sending its next request)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import connection, http

from privproxy.mitm import flowview, internals

logger = logging.getLogger(__name__)

# How long a connection open at SIGTERM (or since its last answer) may still send a request during a drain: a TLS
# handshake and a request in transit on a slow link fit; a client that waits longer reconnects elsewhere.
IDLE_GRACE = 1.0
_POLL = 0.05


@dataclass
class _Open:
    client: connection.Client
    busy: int = 0  # requests in flight on it (HTTP/2 carries several)
    idle_since: float = 0.0
    closing: bool = False


class Drain:
    def __init__(self, close: Callable[[object, connection.Client], bool] = internals.close_client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inflight = 0
        self.draining = False
        self._open: dict[str, _Open] = {}
        self._close = close
        self._clock = clock

    def client_connected(self, client: connection.Client) -> None:
        self._open[client.id] = _Open(client, idle_since=self._clock())

    def client_disconnected(self, client: connection.Client) -> None:
        self._open.pop(client.id, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.inflight += 1
        flowview.context(flow).inflight = True
        if (conn := self._open.get(flow.client_conn.id)) is not None:
            conn.busy += 1

    def _finished(self, flow: http.HTTPFlow) -> None:
        c = flowview.peek(flow)
        if c is not None and c.inflight:
            c.inflight = False
            self.inflight -= 1
            if (conn := self._open.get(flow.client_conn.id)) is not None:
                conn.busy -= 1
                conn.idle_since = self._clock()

    def _last_on_connection(self, flow: http.HTTPFlow) -> None:
        if self.draining:  # the client sends no more on this connection
            flowview.close_after_answer(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._last_on_connection(flow)  # a streamed answer sends its head now

    def response(self, flow: http.HTTPFlow) -> None:
        self._last_on_connection(flow)
        self._finished(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    async def drain(self, master, timeout: float) -> None:
        """Close the listening sockets, answer what the open connections still ask and close them once idle (at
        most `timeout` s in all), then shut down."""
        try:
            await internals.stop_listening(master)
        except Exception as e:  # noqa: BLE001 - stopping to listen must never prevent the shutdown itself
            logger.error("privproxy: could not stop listening (%s)", type(e).__name__)
        self.draining = True
        start = self._clock()
        deadline = start + timeout
        while (self.inflight > 0 or self._open) and self._clock() < deadline:
            now = self._clock()
            for conn in list(self._open.values()):
                if not conn.closing and conn.busy == 0 and now - max(conn.idle_since, start) >= IDLE_GRACE:
                    conn.closing = self._close(master, conn.client)
            await asyncio.sleep(_POLL)
        if self.inflight:
            logger.warning("privproxy: shutting down with %d requests still in flight after %.0f s",
                           self.inflight, timeout)
        master.shutdown()
