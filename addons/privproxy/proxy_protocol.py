"""[client_ip] The PROXY protocol (v1 text, v2 binary) that a TCP load balancer puts before the client's bytes.

A load balancer that passes TLS through (HAProxy `mode tcp` with `send-proxy-v2`, AWS NLB, ...) cannot add
X-Forwarded-For: the request is encrypted. It announces the client's address in a short header at the start
of the connection instead. Only configured proxies may announce one; see mitm/proxy_protocol.py.
Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 line, CRLF included
V2_MAX_PAYLOAD = 4096  # addresses and TLVs; HAProxy's stay far below
REASONS = ("untrusted_peer", "malformed", "timeout", "unsupported")


class ProxyProtocolError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    """source None: a LOCAL (v2) or UNKNOWN (v1) connection, e.g. a health check; the peer stands for itself."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None = None


def _address(text: str, family: int) -> str:
    ip = ipaddress.ip_address(text)
    if ip.version != family:
        raise ValueError(f"{text} is not IPv{family}")
    return str(ip)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535 or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"bad port {text!r}")
    return int(text)


def parse_v1(line: bytes) -> Header:
    """`PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n` or `PROXY UNKNOWN ...\\r\\n`."""
    if len(line) > V1_MAX or not line.startswith(b"PROXY ") or not line.endswith(b"\r\n"):
        raise ProxyProtocolError("malformed", "not a PROXY v1 line")
    try:
        parts = line[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyProtocolError("malformed", "PROXY v1 line is not ASCII") from None
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return Header(1, None)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("malformed", "PROXY v1 needs TCP4|TCP6 and four fields")
    family = 4 if parts[1] == "TCP4" else 6
    try:
        return Header(1, (_address(parts[2], family), _port(parts[4])), (_address(parts[3], family), _port(parts[5])))
    except ValueError as e:
        raise ProxyProtocolError("malformed", f"PROXY v1: {e}") from None


def parse_v2(fixed: bytes, payload: bytes) -> Header:
    """The 16-byte fixed part (signature, version/command, family/protocol, length) and its payload."""
    if len(fixed) != 16 or not fixed.startswith(V2_SIGNATURE):
        raise ProxyProtocolError("malformed", "not a PROXY v2 header")
    ver_cmd, fam, length = fixed[12], fixed[13], struct.unpack("!H", fixed[14:16])[0]
    if ver_cmd >> 4 != 2 or ver_cmd & 0x0F not in (0, 1):
        raise ProxyProtocolError("malformed", f"PROXY v2: version/command byte {ver_cmd:#04x}")
    if length != len(payload):
        raise ProxyProtocolError("malformed", "PROXY v2: payload length mismatch")
    if ver_cmd & 0x0F == 0:  # LOCAL: the balancer's own connection (health checks)
        return Header(2, None)
    family, transport = fam >> 4, fam & 0x0F
    if family == 0:  # AF_UNSPEC: the balancer does not know; treat like LOCAL
        return Header(2, None)
    if transport != 1:
        raise ProxyProtocolError("unsupported", "PROXY v2: only STREAM (TCP) connections are proxied here")
    if family == 1 and length >= 12:
        src, dst = ipaddress.IPv4Address(payload[0:4]), ipaddress.IPv4Address(payload[4:8])
        sport, dport = struct.unpack("!HH", payload[8:12])
    elif family == 2 and length >= 36:
        src, dst = ipaddress.IPv6Address(payload[0:16]), ipaddress.IPv6Address(payload[16:32])
        sport, dport = struct.unpack("!HH", payload[32:36])
    elif family == 3:
        raise ProxyProtocolError("unsupported", "PROXY v2: AF_UNIX addresses carry no client address")
    else:
        raise ProxyProtocolError("malformed", "PROXY v2: address block too short or unknown family")
    return Header(2, (str(src), sport), (str(dst), dport))


async def read_header(reader: asyncio.StreamReader, timeout: float = 5.0) -> Header:
    """Consume exactly the header from the stream; what follows (TLS or HTTP) stays in the reader."""
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readexactly(12)  # the shortest v1 line is 15 bytes, v2 is 16+
            if head == V2_SIGNATURE:
                fixed = head + await reader.readexactly(4)
                length = struct.unpack("!H", fixed[14:16])[0]
                if length > V2_MAX_PAYLOAD:
                    raise ProxyProtocolError("malformed", "PROXY v2: payload too long")
                return parse_v2(fixed, await reader.readexactly(length))
            if not head.startswith(b"PROXY "):
                raise ProxyProtocolError("malformed", "the connection does not start with a PROXY header")
            line = head
            while not line.endswith(b"\r\n"):
                if len(line) >= V1_MAX:
                    raise ProxyProtocolError("malformed", "PROXY v1 line too long")
                line += await reader.readexactly(1)
            return parse_v1(line)
    except TimeoutError:
        raise ProxyProtocolError("timeout", "no PROXY header within the time limit") from None
    except asyncio.IncompleteReadError:
        raise ProxyProtocolError("malformed", "connection closed inside the PROXY header") from None
