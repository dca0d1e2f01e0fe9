"""MetricsExporter: observe each finished flow, serve /metrics, /healthz and /readyz, write the ready file (C15)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from privproxy.status_server import StatusServer

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 1.0
STALL_SECONDS = 10.0  # /healthz fails when the event loop has not turned for this long


def parse_listen(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'9464', ':9464', '127.0.0.1:9464' or '[::1]:9464' -> (host, port); raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


class MetricsExporter:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.status: StatusServer | None = None
        self.address: tuple[str, int] | None = None
        self.serving = False  # between running and done: /readyz answers 200
        self.beat = time.monotonic()
        self._heart: asyncio.Task[None] | None = None

    def configure(self, updated: set[str]) -> None:
        if "privproxy_metrics" in updated and ctx.options.privproxy_metrics:
            try:
                parse_listen(ctx.options.privproxy_metrics)
            except ValueError as e:
                raise exceptions.OptionsError(f"privproxy_metrics: {e}") from None

    def running(self) -> None:
        if ctx.options.privproxy_metrics and self.status is None:
            host, port = parse_listen(ctx.options.privproxy_metrics)
            self.status = StatusServer(self.shared.metrics.registry, self.live, self.ready)
            self.address = self.status.start(host, port)
        self.beat = time.monotonic()
        self._heart = asyncio.get_running_loop().create_task(self._heartbeat())
        self.serving = True
        self.write_ready_file()

    async def _heartbeat(self) -> None:
        while True:
            self.beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def live(self) -> tuple[bool, str]:
        stalled = time.monotonic() - self.beat
        if stalled > STALL_SECONDS:
            return False, f"event loop stalled for {stalled:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.serving:
            return False, "not serving (starting or shutting down)"
        if self.shared.policy is None:
            return False, "no rules loaded"
        return self.live()

    def write_ready_file(self) -> None:
        path = ctx.options.privproxy_ready_file
        if not path:
            return
        ps = ctx.master.addons.get("proxyserver")
        listen = [list(a[:2]) for a in ps.listen_addrs()] if ps else []
        doc = {"pid": os.getpid(), "listen": listen, "metrics": list(self.address) if self.address else None}
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def response(self, flow: http.HTTPFlow) -> None:
        self.observe(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if not flowview.answered(flow):
            self.observe(flow)

    def observe(self, flow: http.HTTPFlow) -> None:
        c = flowview.context(flow)
        if c.observed:
            return
        c.observed = True
        if c.state is None:
            return
        try:
            self.shared.metrics.observe(c.state, c.record)
        except Exception as e:  # noqa: BLE001 - metrics must never cost a request its answer
            logger.error("privproxy: metrics observation failed (%s)", type(e).__name__)

    def done(self) -> None:
        self.serving = False
        if self._heart is not None:
            self._heart.cancel()
        if self.status is not None:
            self.status.stop()
            self.status = None
