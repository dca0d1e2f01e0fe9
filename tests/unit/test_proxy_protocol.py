"""The PROXY protocol parser: v1 and v2 as HAProxy sends them, and refusal of anything else (C8, C15; 000 §3)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import proxy_protocol as pp

REST = b"\x16\x03\x01 the TLS ClientHello follows"


def v2(cmd: int = 1, fam: int = 0x11, payload: bytes | None = None) -> bytes:
    if payload is None:
        payload = (ipaddress.IPv4Address("203.0.113.9").packed + ipaddress.IPv4Address("10.0.0.1").packed
                   + struct.pack("!HH", 4444, 443))
    return pp.V2_SIGNATURE + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(payload)) + payload


def read(data: bytes, timeout: float = 1.0) -> tuple[pp.Header, bytes]:
    async def go():
        r = asyncio.StreamReader()
        r.feed_data(data)
        r.feed_eof()
        h = await pp.read_header(r, timeout)
        return h, await r.read()
    return asyncio.run(go())


def test_v1_tcp4_and_tcp6_leave_the_rest_in_the_stream():
    h, rest = read(b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n" + REST)
    assert h == pp.Header(1, ("198.51.100.7", 51234), ("10.0.0.1", 443))
    assert rest == REST
    h, rest = read(b"PROXY TCP6 2001:db8::17 2001:db8::1 1 443\r\n" + REST)
    assert h.source == ("2001:db8::17", 1) and rest == REST


def test_v1_unknown_means_the_balancer_itself():
    assert read(b"PROXY UNKNOWN\r\n" + REST)[0].source is None


def test_v2_ipv4_ipv6_with_tlvs_and_local():
    h, rest = read(v2() + REST)
    assert h == pp.Header(2, ("203.0.113.9", 4444), ("10.0.0.1", 443)) and rest == REST
    six = (ipaddress.IPv6Address("2001:db8::99").packed + ipaddress.IPv6Address("2001:db8::1").packed
           + struct.pack("!HH", 60000, 443) + b"\x04\x00\x01\x00")  # a NOOP TLV after the addresses
    h, rest = read(v2(fam=0x21, payload=six) + REST)
    assert h.source == ("2001:db8::99", 60000) and rest == REST
    assert read(v2(cmd=0, fam=0, payload=b"") + REST)[0].source is None  # LOCAL: HAProxy's health check


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "malformed"),  # no header at all
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 51234\r\n", "malformed"),  # a field missing
    (b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n", "malformed"),  # family mismatch
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 070000 443\r\n", "malformed"),  # bad port
    (b"PROXY TCP4 " + b"9" * 120 + b"\r\n", "malformed"),  # longer than a v1 line can be
    (b"PROXY TCP4 198.51.100.7", "malformed"),  # closed inside the header
    (v2(fam=0x12), "unsupported"),  # UDP
    (v2(fam=0x31, payload=b"\x00" * 216), "unsupported"),  # AF_UNIX
    (v2(fam=0x21), "malformed"),  # IPv6 family with an IPv4-sized block
    (pp.V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, "malformed"),  # version 3
    (pp.V2_SIGNATURE + b"\x21\x11\xff\xff", "malformed"),  # announced payload far too long
])
def test_refused_headers_say_why(data, reason):
    with pytest.raises(pp.ProxyProtocolError) as e:
        read(data)
    assert e.value.reason == reason


def test_a_silent_peer_times_out():
    async def go():
        r = asyncio.StreamReader()
        r.feed_data(b"PROXY TCP4 ")
        await pp.read_header(r, timeout=0.05)
    with pytest.raises(pp.ProxyProtocolError) as e:
        asyncio.run(go())
    assert e.value.reason == "timeout"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.builds(lambda b: b"PROXY " + b, st.binary(max_size=120)),
                 st.builds(lambda b: pp.V2_SIGNATURE + b, st.binary(max_size=80))))
def test_fuzz_only_a_clean_refusal_or_a_valid_address(data):
    try:
        h, _ = read(data, timeout=0.2)
    except pp.ProxyProtocolError as e:
        assert e.reason in pp.REASONS
    else:
        if h.source is not None:
            ipaddress.ip_address(h.source[0])
            assert 0 <= h.source[1] <= 65535
