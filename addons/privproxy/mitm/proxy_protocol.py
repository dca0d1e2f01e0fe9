"""Accept the PROXY protocol on reverse-proxy listeners (mitmproxy 12 has no such option).

With `privproxy_proxy_protocol` on, every connection to a reverse listener must come from a trusted proxy
and start with a PROXY header; the announced source becomes the connection's peer address, so the rest of
privproxy (client resolution, truncation, geo, logs) sees the visitor. Anything else is closed and counted:
a direct visitor could otherwise announce any address it likes (C15).
"""

from __future__ import annotations

import asyncio
import logging

from privproxy import metrics, proxy_protocol, truncate
from privproxy.mitm import internals
from privproxy.mitm.shared import SharedState

logger = logging.getLogger(__name__)


def _close(writer) -> None:
    try:
        writer.close()
    except Exception:  # noqa: BLE001 - the peer may be gone already
        pass


async def accept(shared: SharedState, reader, writer):
    """The header's source as the new peer, or None after closing a connection that may not proceed."""
    m = shared.metrics
    peer = writer.get_extra_info("peername")
    policy = shared.policy
    ip = truncate.parse_ip(peer[0]) if peer else None  # zone index and IPv4-mapped forms handled there
    if policy is None or ip is None or not policy.client_ip.is_trusted(ip):
        m.proxy_connection(metrics.UNTRUSTED)
        _close(writer)
        return None
    try:
        header = await proxy_protocol.read_header(reader)
    except proxy_protocol.ProxyProtocolError as e:
        m.proxy_connection(e.reason)
        logger.info("privproxy: PROXY header refused from a trusted proxy: %s", e)
        _close(writer)
        return None
    if header.source is None:
        m.proxy_connection(metrics.LOCAL)
        return writer
    m.proxy_connection(metrics.ACCEPTED)
    return internals.with_peer(writer, header.source)


def install(shared: SharedState) -> None:
    """Make reverse listeners started from now on require a PROXY header (process-wide, like the option)."""

    async def gate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        if not shared.proxy_protocol:
            return writer
        try:
            return await accept(shared, reader, writer)
        except Exception as e:  # noqa: BLE001 - fail closed: no header, no connection
            shared.metrics.proxy_connection(metrics.MALFORMED)
            logger.error("privproxy: PROXY protocol handling failed (%s)", type(e).__name__)
            _close(writer)
            return None

    internals.accept_reverse_connections(gate)
