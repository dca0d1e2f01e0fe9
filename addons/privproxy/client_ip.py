"""[client_ip] Who the client is: trusted proxies, a right-to-left forwarding-header walk, truncation (C2, C8, C15).

Forwarding headers are believed only from configured proxies, and only up to the first untrusted hop, as
nginx's `real_ip_recursive on` does: everything to the left of that hop was written by the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from privproxy import truncate
from privproxy.truncate import IPAddress, Truncation

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Headers that carry a client address or the original scheme/host. From an untrusted peer they are lies;
# from a trusted one they are consumed here. Either way the origin never sees them as sent: it receives
# only the X-Forwarded-For/-Proto/-Host that privproxy writes.
ADDRESS_HEADERS = (
    "forwarded", "x-forwarded-for", "x-real-ip", "true-client-ip", "cf-connecting-ip", "x-client-ip",
    "x-cluster-client-ip", "fastly-client-ip", "x-forwarded", "forwarded-for", "client-ip",
    "x-original-forwarded-for", "x-proxyuser-ip", "x-envoy-external-address", "x-azure-clientip",
    "x-appengine-user-ip", "akamai-client-ip", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
    "x-forwarded-scheme", "x-forwarded-ssl", "x-url-scheme", "front-end-https", "via",
)
HEADER_CHOICES = ("x-forwarded-for", "forwarded")


@dataclass(frozen=True, slots=True)
class Settings:
    trusted_proxies: tuple[Network, ...] = ()
    # Which header a trusted proxy writes; the first one present is used.
    headers: tuple[str, ...] = ("x-forwarded-for", "forwarded")
    truncation: Truncation = field(default_factory=Truncation)

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.trusted_proxies if net.version == ip.version)


@dataclass(frozen=True, slots=True)
class Client:
    ip: IPAddress  # full address: only for geo lookup, never stored or forwarded
    truncated: str
    family: str
    https: bool
    via_proxy: bool = False
    ignored_headers: bool = False  # forwarding headers sent by an untrusted peer (spoofing attempt or misconfig)
    malformed: bool = False  # a trusted proxy's header could not be parsed; the proxy itself stands in


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; raises ValueError with the offending value."""
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"{v!r}: {e}") from None
    return tuple(nets)


def parse_hop(text: str) -> IPAddress | None:
    """One hop of X-Forwarded-For or a Forwarded `for=` value: bare, bracketed, with or without a port."""
    text = text.strip().strip('"')
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        return truncate.parse_ip(text[1:end]) if end > 0 else None
    if text.count(":") == 1:  # IPv4 with a port (IIS, Azure); IPv6 has at least two colons
        text = text.split(":", 1)[0]
    return truncate.parse_ip(text)


def forwarded_elements(values: Iterable[str]) -> list[dict[str, str]]:
    """RFC 7239 elements, left to right; quoted strings may contain `,` and `;`."""
    elements: list[dict[str, str]] = []
    for value in values:
        current: dict[str, str] = {}
        key, buf, quoted = "", [], False
        for ch in value + ",":
            if ch == '"':
                quoted = not quoted
            elif quoted:
                buf.append(ch)
            elif ch == "=" and not key:
                key, buf = "".join(buf).strip().lower(), []
            elif ch in ";,":
                if key:
                    current[key] = "".join(buf).strip()
                key, buf = "", []
                if ch == "," and current:
                    elements.append(current)
                    current = {}
            else:
                buf.append(ch)
    return elements


def _hops(settings: Settings, get_all: Callable[[str], list[str]]) -> tuple[list[str], list[str]] | None:
    """(address hops, proto values) from the first configured header that is present."""
    for name in settings.headers:
        values = get_all(name)
        if not values:
            continue
        if name == "forwarded":
            elems = forwarded_elements(values)
            return [e.get("for", "") for e in elems], [e["proto"] for e in elems if "proto" in e]
        hops = [h for v in values for h in v.split(",")]
        return hops, [p.strip() for v in get_all("x-forwarded-proto") for p in v.split(",")]
    return None


def resolve(peer: str, tls: bool, get_all: Callable[[str], list[str]], settings: Settings) -> Client | None:
    """The client behind a connection; None when even the peer address is unusable."""
    peer_ip = truncate.parse_ip(peer)
    if peer_ip is None:
        return None
    t = settings.truncation
    if not settings.is_trusted(peer_ip):
        spoof = any(get_all(h) for h in ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-proto"))
        return Client(peer_ip, truncate.truncate_ip(peer_ip, t), truncate.family(peer_ip), tls,
                      ignored_headers=spoof)
    found = _hops(settings, get_all)
    if found is None:
        return Client(peer_ip, truncate.truncate_ip(peer_ip, t), truncate.family(peer_ip), tls)
    hops, protos = found
    # The rightmost proto was written by the proxy nearest to us; a client-written value further left
    # must never turn plain HTTP into "HTTPS" and so skip the redirect.
    https = tls or (bool(protos) and protos[-1].strip().lower() == "https")
    client, malformed = peer_ip, False
    for hop in reversed(hops):
        ip = parse_hop(hop)
        if ip is None:
            malformed = True
            break
        client = ip
        if not settings.is_trusted(ip):
            break
    return Client(client, truncate.truncate_ip(client, t), truncate.family(client), https,
                  via_proxy=True, malformed=malformed)


def parse_networks_one(value: str) -> Network:
    return parse_networks([value])[0]
