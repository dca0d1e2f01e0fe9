"""[ip_truncation] IPv4/IPv6 prefix masking, and masking of addresses inside free text (C2, C8)."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Truncation:
    """How many leading bits of an address survive (anonip and GA's anonymize_ip use /24 and /48)."""

    ipv4_prefix: int = 24
    ipv6_prefix: int = 48


DEFAULT = Truncation()


@lru_cache(maxsize=8192)  # every request parses its peer (and forwarding hops): the same few, over and over
def parse_ip(text: str) -> IPAddress | None:
    """An address from a bare IP string ('[v6]' accepted); None when it is not one."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # a zone index (fe80::1%eth0) names a local interface, never a visitor
        text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return unmap(ip)


def unmap(ip: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d is an IPv4 client; truncating it as IPv6 /48 would keep all of its bits."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=65536)
def _truncate_cached(ip: IPAddress, v4: int, v6: int) -> str:
    prefix = v4 if ip.version == 4 else v6
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def truncate_ip(ip: IPAddress, t: Truncation = DEFAULT) -> str:
    return _truncate_cached(unmap(ip), t.ipv4_prefix, t.ipv6_prefix)


def truncate_text(text: str, t: Truncation = DEFAULT) -> str | None:
    """The truncated form of an address given as text, or None when the text is no address."""
    fast = _dotted_quad(text, t.ipv4_prefix) if ":" not in text else _colon_hex(text, t)
    if fast is not None:
        return fast
    ip = parse_ip(text)
    return None if ip is None else truncate_ip(ip, t)


_MAPPED = bytes(10) + b"\xff\xff"


def _colon_hex(text: str, t: Truncation) -> str | None:
    """IPv6 through the C library; None (use the full parser) for zones, brackets and long prefixes."""
    if t.ipv6_prefix > 96:  # inet_ntop and ipaddress may spell the low 32 bits differently
        return None
    try:
        b = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    if b[:12] == _MAPPED:
        return _dotted_quad(socket.inet_ntop(socket.AF_INET, b[12:]), t.ipv4_prefix)
    n = int.from_bytes(b, "big") & (((1 << 128) - 1) ^ ((1 << (128 - t.ipv6_prefix)) - 1))
    return socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big"))


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")  # ASCII digits, no leading zeros: as ipaddress


def _dotted_quad(text: str, prefix: int) -> str | None:
    """Plain a.b.c.d without the ipaddress module (log filtering sees millions); None: use the full parser."""
    m = QUAD.fullmatch(text)
    if m is None:
        return None
    a, b, c, d = m.groups()
    if prefix == 24:
        return f"{a}.{b}.{c}.0"
    n = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    n &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def family(ip: IPAddress) -> str:
    return "ipv4" if ip.version == 4 else "ipv6"


# Candidates only: every match is confirmed by ipaddress before it is masked, so the patterns may over-match.
_V4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d])"
_V6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?![\w:])"
IP_CANDIDATE = re.compile(f"{_V6}|{_V4}")


def mask_ips(text: str, t: Truncation = DEFAULT) -> str:
    """Every IPv4/IPv6 address inside `text` replaced by its truncated form."""
    if "." not in text and ":" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        masked = truncate_text(m.group(0), t)
        return m.group(0) if masked is None else masked

    return IP_CANDIDATE.sub(repl, text)
