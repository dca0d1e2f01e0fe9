"""Drain: on SIGTERM stop accepting connections, let requests in flight finish, then stop (C2: every
answered request keeps its log record; no visitor gets a cut-off answer during a deploy or scale-down).

Connections already open when the drain starts are not cut while they may still carry a request: every answer
from then on closes its HTTP/1 connection after it (`Connection: close`), and a connection is closed by the proxy
only once it is idle: no request in flight on it, nothing of its answers left unsent, and no event on it (data
received, a hook done) for IDLE_GRACE seconds of the drain, as nginx closes idle keep-alive connections at a
graceful shutdown. The proxy stops when no client connection is left and every closed one has sent what was
written to it (or at the timeout). Stopping as soon as nothing was in flight instead cut a request that arrived
a moment later on an open connection (a kept-alive client's next request, one just past its TLS handshake).

Left as it is: HTTP/2 connections get no GOAWAY first (mitmproxy's layer has no way to send one), so a request
a client starts in the very moment its idle connection is closed fails on the client's side, as on any server's
idle close; no request it sends before is lost. A WebSocket is closed the same way once quiet for IDLE_GRACE,
without a close frame (before, the drain cut it at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mitmproxy import connection, ctx, http

from privproxy.mitm import flowview, internals

logger = logging.getLogger(__name__)

# How long a connection open at SIGTERM must have been silent before the drain closes it: a TLS handshake and a
# request in transit on a slow link fit; a client that waits longer reconnects elsewhere.
IDLE_GRACE = 1.0
_POLL = 0.05


class Link(Protocol):
    """internals.ClientLink: what the drain needs of a connection's handler."""

    def quiet(self) -> float: ...

    def unsent(self) -> int: ...

    def close(self) -> bool: ...


def _master_link(client: connection.Client) -> Link | None:
    return internals.client_link(ctx.master, client)


@dataclass
class _Open:
    client: connection.Client
    link: Link | None
    busy: int = 0  # requests in flight on it (HTTP/2 carries several)
    idle_since: float = 0.0  # when its last request ended (monotonic)
    closing: bool = False


class Drain:
    def __init__(self, link: Callable[[connection.Client], Link | None] = _master_link,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inflight = 0
        self.draining = False
        self._open: dict[str, _Open] = {}
        self._closed: list[Link] = []  # connections gone, maybe with answers still to send
        self._link = link
        self._clock = clock

    def client_connected(self, client: connection.Client) -> None:
        self._open[client.id] = _Open(client, self._link(client), idle_since=self._clock())

    def client_disconnected(self, client: connection.Client) -> None:
        conn = self._open.pop(client.id, None)
        if self.draining and conn is not None and conn.link is not None:
            self._closed.append(conn.link)

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

    def _idle(self, conn: _Open, now: float, start: float) -> bool:
        if conn.busy:
            return False
        if conn.link is None:
            conn.link = self._link(conn.client)  # not registered yet when it connected
            if conn.link is None:
                return False
        quiet = min(now - max(conn.idle_since, start), conn.link.quiet())
        return quiet >= IDLE_GRACE and not conn.link.unsent()

    def _done(self) -> bool:
        self._closed = [link for link in self._closed if link.unsent()]
        return not self.inflight and not self._open and not self._closed

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
        while not self._done() and self._clock() < deadline:
            now = self._clock()
            for conn in list(self._open.values()):
                if not conn.closing and self._idle(conn, now, start):
                    conn.closing = conn.link.close()  # type: ignore[union-attr]
            await asyncio.sleep(_POLL)
        if self.inflight:
            logger.warning("privproxy: shutting down with %d requests still in flight after %.0f s",
                           self.inflight, timeout)
        elif self._open or self._closed:
            logger.warning("privproxy: shutting down with %d connections still open or sending after %.0f s",
                           len(self._open) + len(self._closed), timeout)
        master.shutdown()
