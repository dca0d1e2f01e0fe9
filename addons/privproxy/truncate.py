"""[ip_truncation] IPv4/IPv6 prefix masking, and masking of addresses inside free text (C2, C8).

Two rules keep a truncated address from holding more than its prefix. An IPv6 address that carries an IPv4
address (mapped, compatible, SIIT, 6to4, NAT64, Teredo) is that IPv4 client and is truncated as IPv4 (`unmap`,
which `parse_ip` applies, so peers, hops, PROXY sources, geo, logs and beacons all follow). And an address in a
value is read the way its receivers read it (inet_aton, browsers: octal, hex, leading zeros), not only as
`ipaddress` does, so no spelling passes unmasked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from privproxy.schema_types import integer, obj

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Truncation:
    """How many leading bits of an address survive (anonip and GA's anonymize_ip use /24 and /48)."""

    ipv4_prefix: int = 24
    ipv6_prefix: int = 48


DEFAULT = Truncation()
SCHEMA = obj("How client addresses are truncated everywhere (C2, C8).", {
    "ipv4_prefix": integer("Bits of an IPv4 address kept.", 0, 32, DEFAULT.ipv4_prefix),
    "ipv6_prefix": integer("Bits of an IPv6 address kept.", 0, 128, DEFAULT.ipv6_prefix),
})


def parse(node: Node | None) -> Truncation:
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    return Truncation(ipv4_prefix=SCHEMA.read(m, "ipv4_prefix"), ipv6_prefix=SCHEMA.read(m, "ipv6_prefix"))


def parse_ip(text: str) -> IPAddress | None:
    """An address from a bare IP string ('[v6]' accepted), in `ipaddress`'s strict syntax; None when it is not one.
    For values that may be spelled otherwise (octal, hex, leading zeros, ports) use `parse_address`."""
    # A forwarding hop is the client's text, as long as a request head: parsed but not kept, since 8192 such keys
    # would hold 512 MiB (issue 17). Any address, bracketed and with a zone index, fits in 64 characters.
    return _parse_ip(text) if len(text) <= 64 else _parse_ip.__wrapped__(text)


@lru_cache(maxsize=8192)  # every request parses its peer (and forwarding hops): the same few, over and over
def _parse_ip(text: str) -> IPAddress | None:
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


_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, RFC 4291 2.5.5.2
_TRANSLATED = bytes(8) + b"\xff\xff\x00\x00"  # ::ffff:0:0:0/96, SIIT (RFC 2765)
_NAT64 = b"\x00\x64\xff\x9b" + bytes(8)  # 64:ff9b::/96, RFC 6052 well-known prefix
_NAT64_LOCAL = b"\x00\x64\xff\x9b\x00\x01"  # 64:ff9b:1::/48, RFC 8215 local-use
_ZERO12 = bytes(12)


def embedded_ipv4(packed: bytes) -> bytes | None:
    """The four bytes of the IPv4 address a 16-byte IPv6 address carries, or None.

    Network-specific NAT64 and 6rd prefixes are the operator's choice and cannot be recognised here; a
    local-use NAT64 address is read at the /96 position (its last 32 bits), the form deployments use.
    """
    first = packed[0]  # every form below starts with 0x00 or 0x20: most clients' addresses are decided here
    if first == 0:
        head, low = packed[:12], packed[12:]
        if head == _MAPPED or head == _TRANSLATED or head == _NAT64 or packed[:6] == _NAT64_LOCAL:
            return low
        if head == _ZERO12:
            # IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1, deprecated but still parsed); :: and ::1 are not.
            return low if low > b"\x00\x00\x00\x01" else None
    elif first == 0x20:
        if packed[1] == 0x02:  # 6to4 2002:V4ADDR::/48 (RFC 3056): the site's public IPv4 in bits 16-48
            return packed[2:6]
        if packed[:4] == b"\x20\x01\x00\x00":  # Teredo (RFC 4380): the client's public IPv4, bit-inverted
            return bytes(b ^ 0xFF for b in packed[12:])
    return None


def _isatap(packed: bytes) -> bool:
    """ISATAP interface id ::0:5efe:V4 or ::200:5efe:V4 (RFC 5214 6.1; u/g bits may be set)."""
    return packed[8] & 0xFC == 0 and packed[9] == 0 and packed[10:12] == b"\x5e\xfe"


def unmap(ip: IPAddress) -> IPAddress:
    """The IPv4 client an IPv6 address stands for: truncating 2002:cb00:714d::1 as IPv6 /48 would keep all of
    203.0.113.77, ::ffff:a.b.c.d /48 every bit of a.b.c.d. Other addresses are returned as they are."""
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = embedded_ipv4(ip.packed)
        if v4 is not None:
            return ipaddress.IPv4Address(v4)
    return ip


def _v6_prefix(packed: bytes, prefix: int) -> int:
    # An ISATAP address keeps its site prefix (the routing information, as any IPv6 client's) but never its
    # interface id, which is the host's IPv4 address: at most /64 survives, whatever ipv6_prefix says.
    return min(prefix, 64) if _isatap(packed) else prefix


@lru_cache(maxsize=65536)
def _truncate_cached(ip: IPAddress, v4: int, v6: int) -> str:
    prefix = v4 if ip.version == 4 else _v6_prefix(ip.packed, v6)
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def truncate_ip(ip: IPAddress, t: Truncation = DEFAULT) -> str:
    return _truncate_cached(unmap(ip), t.ipv4_prefix, t.ipv6_prefix)


def truncate_text(text: str, t: Truncation = DEFAULT, *, numeric: bool = False) -> str | None:
    """The truncated form of an address given as text in any spelling `parse_address` reads (the port is
    dropped); None when the text is no address. `numeric`: the field is known to hold an address (a beacon's
    ip role), so single numbers and short dotted forms (3405803853, 0xcb00714d, 203.7434701) count too."""
    fast = _dotted_quad(text, t.ipv4_prefix) if ":" not in text else _colon_hex(text, t)
    if fast is not None:
        return fast
    ip = parse_address(text, numeric)
    return None if ip is None else truncate_ip(ip, t)


def _colon_hex(text: str, t: Truncation) -> str | None:
    """IPv6 through the C library; None (use the full parser) for zones, brackets and long prefixes."""
    try:
        b = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    v4 = embedded_ipv4(b)
    if v4 is not None:
        return _masked_v4(int.from_bytes(v4, "big"), t.ipv4_prefix)
    prefix = _v6_prefix(b, t.ipv6_prefix)
    if prefix > 96:  # inet_ntop and ipaddress may spell the low 32 bits differently
        return None
    whole, bits = divmod(prefix, 8)  # masked bytewise: a 128-bit integer's arithmetic costs more
    kept = b[:whole] + bytes((b[whole] & (0xFF00 >> bits),)) if bits else b[:whole]
    return socket.inet_ntop(socket.AF_INET6, kept + _ZEROS[16 - len(kept)])


_ZEROS = tuple(bytes(n) for n in range(17))


OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 in ASCII digits without leading zeros
_OCTET = rf"({OCTET})"
QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")  # ASCII digits, no leading zeros: as ipaddress


def _dotted_quad(text: str, prefix: int) -> str | None:
    """Plain a.b.c.d without the ipaddress module (log filtering sees millions); None: use the full parser."""
    m = QUAD.fullmatch(text)
    if m is None:
        return None
    a, b, c, d = m.groups()
    if prefix == 24:
        return f"{a}.{b}.{c}.0"
    return _masked_v4((int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d), prefix)


def _masked_v4(n: int, prefix: int) -> str:
    n &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def family(ip: IPAddress) -> str:
    return "ipv4" if ip.version == 4 else "ipv6"


# --- addresses as receivers spell them ---------------------------------------------------------------------
_DEC, _OCT, _HEX = re.compile(r"[0-9]+"), re.compile(r"[0-7]+"), re.compile(r"[0-9A-Fa-f]*")


def _number(part: str) -> int | None:
    """One part of an inet_aton address: 0x.. hex, 0.. octal, else decimal; None when it is none of them.
    A leading zero that cannot be octal (089) is read as decimal, as lenient parsers (MySQL's INET_ATON,
    Python before 3.9.5) read it: whichever reading a receiver takes, the address is masked."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16  # "0x" alone is 0 for the WHATWG URL parser
        if _HEX.fullmatch(digits) is None:
            return None
    elif _DEC.fullmatch(part) is None:
        return None
    else:
        digits, base = part, 8 if part[0] == "0" and _OCT.fullmatch(part) else 10
    digits = digits.lstrip("0")
    if len(digits) > 11:  # more than 32 bits in any base; also keeps int() away from huge decimal strings
        return None
    return int(digits, base) if digits else 0


def _inet_aton(text: str, numeric: bool) -> int | None:
    """glibc inet_aton / WHATWG IPv4 parsing. Without `numeric` only the four-part dotted forms count: `127.1`
    is as likely a version number as an address, and a bare integer is a count, a size or a timestamp."""
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":  # "203.0.113.77." is an address to a browser
        parts.pop()
    if len(parts) != 4 and not (numeric and 1 <= len(parts) <= 4):
        return None
    values = []
    for p in parts:
        v = _number(p)
        if v is None:
            return None
        values.append(v)
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    for i, v in enumerate(head):
        last |= v << (24 - 8 * i)
    return last


def _lenient_v6(text: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        pass
    head, sep, tail = text.rpartition(":")
    if not sep or "." not in tail:
        return None
    v4 = _inet_aton(tail, False)  # ::ffff:203.000.113.077: the IPv4 tail in any dotted spelling
    if v4 is None:
        return None
    try:
        return ipaddress.IPv6Address(f"{head}:{ipaddress.IPv4Address(v4)}")
    except ValueError:
        return None


def _parse_address(text: str, numeric: bool) -> IPAddress | None:
    text = text.strip().strip('"').strip()
    if text.startswith("["):  # [v6] or [v6]:port (RFC 3986 IP-literal)
        inner, close, rest = text[1:].partition("]")
        if not close or not (rest == "" or (rest[:1] == ":" and rest[1:].isascii() and rest[1:].isdigit())):
            return None
        text = inner
    elif text.count(":") == 1:  # a.b.c.d:port; IPv6 has at least two colons
        text, _, port = text.partition(":")
        if not (port.isascii() and port.isdigit()):
            return None
    if ":" in text:
        ip = _lenient_v6(text.split("%", 1)[0])  # a zone index names a local interface, never a visitor
        return None if ip is None else unmap(ip)
    v4 = _inet_aton(text, numeric)
    return None if v4 is None else ipaddress.IPv4Address(v4)


_cached_parse = lru_cache(maxsize=8192)(_parse_address)


def parse_address(text: str, numeric: bool = False) -> IPAddress | None:
    """An address however it is spelled: bare, quoted, `[v6]`, with a port or a zone index, IPv4 in the
    inet_aton forms (0xcb.0.0x71.0x4d, 0313.0.0161.0115, 203.000.113.077) also as an IPv6 tail. Embedded
    IPv4 is unmapped. `numeric`: also single numbers and short dotted forms (see `truncate_text`)."""
    if len(text) > 128:  # padded with leading zeros: parse it, but do not keep it in the cache
        return _parse_address(text, numeric)
    return _cached_parse(text, numeric)


# Candidates only: every match is confirmed by parse_address before it is masked, so the patterns may
# over-match. IPv4 parts as inet_aton reads them (hex, octal, leading zeros), four of them: fewer parts and
# single numbers are versions and counts in free text. The IPv4 tail of an IPv6 address is tried before a
# hex group, so ::ffff:203.0.113.77 is one candidate (not ::ffff:203 and then .0.113.77). Each match starts
# only where no address character precedes it, so the scan is linear in the text.
_P = r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)"
_DOTTED = rf"{_P}\.{_P}\.{_P}\.{_P}(?![0-9])"
_V4 = rf"(?<![0-9.]){_DOTTED}"
_V6 = rf"(?<![\w:.])(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:{_DOTTED}|[0-9A-Fa-f]{{0,4}}(?!\.[0-9]))(?![\w:])"
IP_CANDIDATE = re.compile(f"{_V6}|{_V4}")


def find_ips(text: str) -> list[tuple[int, int, IPAddress]]:
    """(start, end, address) of every address inside `text` (brackets, ports and zones stay outside)."""
    if "." not in text and ":" not in text:
        return []
    found = []
    for m in IP_CANDIDATE.finditer(text):
        ip = parse_address(m.group(0))
        if ip is not None:
            found.append((m.start(), m.end(), ip))
    return found


def mask_ips(text: str, t: Truncation = DEFAULT) -> str:
    """Every IPv4/IPv6 address inside `text`, in any spelling, replaced by its truncated canonical form."""
    found = find_ips(text)
    if not found:
        return text
    out, pos = [], 0
    for start, end, ip in found:
        out += (text[pos:start], truncate_ip(ip, t))
        pos = end
    out.append(text[pos:])
    return "".join(out)
