"""The PROXY-protocol gate of reverse listeners: only a trusted proxy may announce a client address; every other
connection is closed and counted (C8, C15). The parser itself: tests/unit/test_proxy_protocol.py."""

from __future__ import annotations

import asyncio

import pytest

from privproxy import client_ip, policy
from privproxy.metrics import Metrics
from privproxy.mitm import proxy_protocol
from privproxy.mitm.shared import SharedState

BALANCER = ("127.0.0.1", 40000)


class Writer:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.closed = False

    def get_extra_info(self, name: str, default=None):
        return self.peer if name == "peername" else default

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def shared() -> SharedState:
    s = SharedState(Metrics())
    s.extra_trusted = client_ip.parse_networks(["127.0.0.0/8"])
    s.swap(policy.default())
    return s


def accept(shared: SharedState, data: bytes, peer: tuple[str, int] = BALANCER):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        writer = Writer(peer)
        return writer, await proxy_protocol.accept(shared, reader, writer), await reader.read()
    return asyncio.run(go())


def counted(shared: SharedState, result: str) -> float | None:
    return shared.metrics.registry.get_sample_value("privproxy_proxy_protocol_connections_total", {"result": result})


def test_a_trusted_proxy_announces_the_client(shared):
    writer, accepted, rest = accept(shared, b"PROXY TCP4 203.0.113.9 10.0.0.1 4444 443\r\nGET / HTTP/1.1\r\n")
    assert accepted.get_extra_info("peername") == ("203.0.113.9", 4444) and not writer.closed
    assert rest == b"GET / HTTP/1.1\r\n" and counted(shared, "accepted") == 1


def test_the_balancers_own_connection_stands_for_itself(shared):
    writer, accepted, _ = accept(shared, b"PROXY UNKNOWN\r\n")
    assert accepted is writer and accepted.get_extra_info("peername") == BALANCER and counted(shared, "local") == 1


def test_an_untrusted_peer_is_closed_before_anything_is_read(shared):
    writer, accepted, rest = accept(shared, b"PROXY TCP4 198.51.100.1 10.0.0.1 1 443\r\n", peer=("203.0.113.5", 1))
    assert accepted is None and writer.closed and rest.startswith(b"PROXY")
    assert counted(shared, "untrusted_peer") == 1


def test_a_malformed_header_from_a_trusted_proxy_is_refused(shared):
    writer, accepted, _ = accept(shared, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert accepted is None and writer.closed and counted(shared, "malformed") == 1
