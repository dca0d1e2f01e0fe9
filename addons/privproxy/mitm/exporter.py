"""MetricsExporter: observe each finished flow, serve /metrics, /healthz and /readyz, write the ready file (C15).

It also times the origin (request sent to response headers), counts requests in flight, and publishes the expiry
of the certificates given to mitmproxy's `certs` option (`mitmdump --certs`); privproxy's own --cert files are
reported by mitm.certificates through Metrics.certificate, named with certificate_name below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from cryptography import x509
from mitmproxy import ctx, exceptions, http

from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Source
from privproxy.status_server import StatusServer

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 1.0
STALL_SECONDS = 10.0  # /healthz fails when the event loop has not turned for this long
# mitmproxy's own certificates option (`mitmdump --certs`), which tlsconfig serves; privproxy's --cert files are
# published by mitm.certificates, which re-reads them
CERTIFICATE_OPTIONS = ("certs",)


def parse_listen(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'9464', ':9464', '127.0.0.1:9464' or '[::1]:9464' -> (host, port); raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def certificate_name(cert: x509.Certificate, fallback: str) -> str:
    """The name a served certificate goes by in metrics: its first DNS name (subjectAltName, else the subject's
    common name), else `fallback` (its file's name). The operator's configuration, never a visitor's input."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return names[0] if names else fallback


def certificate_expiry(path: str | Path) -> tuple[str, float]:
    """(name, notAfter as seconds since the epoch) of the leaf, the first certificate in a PEM file (a combined
    PEM with the key, a fullchain.pem, a tls.crt). Raises OSError or ValueError."""
    leaf = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
    return certificate_name(leaf, Path(path).name), leaf.not_valid_after_utc.timestamp()


class MetricsExporter:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.status: StatusServer | None = None
        self.address: tuple[str, int] | None = None
        self.serving = False  # between running and done: /readyz answers 200
        self.beat = time.monotonic()
        self._heart: asyncio.Task[None] | None = None
        self.certificates: dict[str, float] = {}  # name -> notAfter of the certs option's certificates

    def configure(self, updated: set[str]) -> None:
        if "privproxy_metrics" in updated and ctx.options.privproxy_metrics:
            try:
                parse_listen(ctx.options.privproxy_metrics)
            except ValueError as e:
                raise exceptions.OptionsError(f"privproxy_metrics: {e}") from None
        if "privproxy_upstream_timeout" in updated and "privproxy_upstream_timeout" in ctx.options:
            self.shared.metrics.upstream_timeout(ctx.options.privproxy_upstream_timeout)
        options = [o for o in CERTIFICATE_OPTIONS if o in ctx.options]
        if updated & set(options):
            self.load_certificates([spec for o in options for spec in getattr(ctx.options, o)])

    def load_certificates(self, specs) -> None:
        """The expiry of each certificate given as "[DOMAIN=]PEM" to mitmproxy's `certs` option; a file that
        cannot be read is left to tlsconfig, which refuses it with its own message."""
        found: dict[str, float] = {}
        for spec in specs:
            path = spec.split("=", 1)[1] if "=" in spec else spec
            try:
                name, not_after = certificate_expiry(Path(path).expanduser())
            except (OSError, ValueError, IndexError) as e:
                logger.warning("privproxy: cannot read the expiry of certificate %s (%s)", path, type(e).__name__)
                continue
            found[name] = min(not_after, found.get(name, not_after))  # two files for one name: the earlier
        m = self.shared.metrics
        for name in self.certificates.keys() - found.keys():
            m.certificate_removed(name)
        for name, not_after in found.items():
            m.certificate(name, not_after)
        self.certificates = found

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

    # --- Requests in flight and the origin's latency ----------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        c = flowview.context(flow)
        if not c.gauged:
            c.gauged = True
            self.shared.metrics.request_started()

    def request(self, flow: http.HTTPFlow) -> None:
        # After the filter's request hook (which may have answered here): from now on the origin has the turn.
        if flowview.awaiting_origin(flow):
            flowview.context(flow).sent = time.time()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        c = flowview.peek(flow)
        if c is None or not c.sent:
            return
        sent, c.sent = c.sent, 0.0
        beacon = c.state is not None and c.state.codec is not None
        # the origin's headers, or the upstream timeout's own 504 (observed at the timeout: beyond the last bucket)
        self.shared.metrics.upstream_latency_observed(Source.VENDOR if beacon else Source.ORIGIN, time.time() - sent)

    def _ended(self, flow: http.HTTPFlow) -> None:
        c = flowview.peek(flow)
        if c is not None and c.gauged:
            c.gauged = False
            self.shared.metrics.request_ended()

    def response(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)
        self.observe(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)
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
