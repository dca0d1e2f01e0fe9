"""[client_ip] Who the client is: trusted proxies, a right-to-left forwarding-header walk, truncation (C2, C8, C15).

Security model. A header says who the client is only when the connection comes from a configured proxy
(`trusted_proxies`), and only as far as that proxy vouches for it:
- X-Forwarded-For and Forwarded are walked right to left up to the first untrusted hop, as nginx's
  `real_ip_recursive on` does: everything to the left of that hop was written by the client.
- A CDN's single-address header (CF-Connecting-IP, True-Client-IP, CloudFront-Viewer-Address,
  Fastly-Client-IP, X-Real-IP, Fly-Client-IP) is the address the CDN's edge saw. Name one in `headers` only
  when every request reaching the trusted proxies has passed that CDN (the load balancer admits only the CDN's
  ranges), since a request that bypassed it carries whatever the client wrote there; Fastly keeps a
  client-sent Fastly-Client-IP unless the service overwrites it in vcl_recv.
- The scheme: Forwarded `proto` only from the element whose `for` was taken, X-Forwarded-Proto only its
  rightmost value, so a client-written `https` never skips the redirect.
Whatever was believed, the origin never sees these headers as sent: privproxy strips every header that
names or holds an address (`is_address_header`, `holds_address`) and writes its own truncated X-Forwarded-*.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from privproxy import truncate
from privproxy.misses import Misses
from privproxy.schema_types import arr, obj, string
from privproxy.truncate import IPAddress, Truncation

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Headers that carry a client address, its port or the original scheme/host, by name: load balancers, CDNs
# and platforms (Cloudflare, CloudFront, Azure Front Door, Fastly, Fly.io, Akamai, DigitalOcean, Netlify,
# Vercel, Imperva, Sucuri, App Engine, Envoy, WebLogic/Oracle). From an untrusted peer they are lies; from a
# trusted one they are consumed here. Either way they never reach the origin as sent; other names are judged
# by their value (`holds_address`).
ADDRESS_HEADERS = (
    "forwarded", "x-forwarded-for", "x-real-ip", "true-client-ip", "cf-connecting-ip", "cf-connecting-ipv6",
    "cf-pseudo-ipv4", "x-client-ip", "x-cluster-client-ip", "fastly-client-ip", "x-forwarded", "forwarded-for",
    "client-ip", "x-original-forwarded-for", "x-proxyuser-ip", "x-envoy-external-address", "x-azure-clientip",
    "x-azure-socketip", "x-appengine-user-ip", "akamai-client-ip", "cloudfront-viewer-address",
    "fly-client-ip", "x-originating-ip", "do-connecting-ip", "x-forwarded-client-ip", "wl-proxy-client-ip",
    "proxy-client-ip", "x-remote-ip", "x-remote-addr", "remote-addr", "x-source-ip", "x-client-public-ip",
    "x-real-client-ip", "x-original-remote-addr", "x-nf-client-connection-ip", "x-vercel-forwarded-for",
    "incap-client-ip", "x-sucuri-clientip", "ali-cdn-real-ip", "cdn-src-ip", "x-true-client-ip",
    "x-client-port", "x-real-port", "x-remote-port", "x-forwarded-proto", "x-forwarded-host",
    "x-forwarded-port", "x-forwarded-scheme", "x-forwarded-ssl", "x-forwarded-server", "x-url-scheme",
    "front-end-https", "cloudfront-forwarded-proto", "via",
)
_ADDRESS_NAMES = frozenset(ADDRESS_HEADERS)
# Written by one CDN edge with exactly one address: the client as that edge saw it.
SINGLE_ADDRESS_HEADERS = ("cf-connecting-ip", "true-client-ip", "cloudfront-viewer-address", "fastly-client-ip",
                          "x-real-ip", "fly-client-ip")
HEADER_CHOICES = ("x-forwarded-for", "forwarded", *SINGLE_ADDRESS_HEADERS)


REMEMBERED_VALUE = 1024  # characters: longer header values are read each time (Settings.holds_address)


@dataclass(frozen=True, slots=True)
class Settings:
    trusted_proxies: tuple[Network, ...] = ()
    # Which header a trusted proxy writes; the first one present is used.
    headers: tuple[str, ...] = ("x-forwarded-for", "forwarded")
    truncation: Truncation = field(default_factory=Truncation)
    _without_address: Misses = field(default_factory=lambda: Misses(REMEMBERED_VALUE), init=False, compare=False,
                                     repr=False)

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.trusted_proxies if net.version == ip.version)

    def holds_address(self, value: str) -> bool:
        """holds_address(value, self.truncation), with the values that hold none remembered (privproxy.misses): a
        visitor's User-Agent, Referer and Cookie come back with every request, and each was split into its tokens
        again."""
        if "." not in value and ":" not in value:
            return False
        memo = self._without_address
        if value in memo:
            return False
        if holds_address(value, self.truncation):
            return True
        memo.add(value)
        return False


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


def parse_networks_one(value: str) -> Network:
    return parse_networks([value])[0]


SCHEMA = obj("Which peers are believed about the client address (C15).", {
    "trusted_proxies": arr("Addresses or CIDRs of your load balancers.", string("An address or CIDR.")),
    "headers": arr("Forwarding headers read from trusted proxies, the first one present wins: x-forwarded-for "
                   "and forwarded are walked right to left; a CDN's single-address header (cf-connecting-ip, "
                   "true-client-ip, cloudfront-viewer-address, fastly-client-ip, x-real-ip, fly-client-ip) "
                   "only when every request reaching the trusted proxies passed that CDN.",
                   string("A header.", enum=HEADER_CHOICES), default=list(Settings().headers)),
})


def parse(node: Node | None, truncation: Truncation) -> Settings:
    """The `client_ip:` section; addresses are truncated as `ip_truncation:` says."""
    if node is None:
        return Settings(truncation=truncation)
    m = node.mapping(SCHEMA.props)
    nets: list[Network] = []
    for n in m["trusted_proxies"].seq() if "trusted_proxies" in m else []:
        got = n.parsed(parse_networks_one, "CIDR", "write an address or network such as 10.0.0.0/8")
        if got is not None:
            nets.append(got)
    headers = Settings().headers
    if "headers" in m:
        headers = tuple(n.choice(HEADER_CHOICES, headers[0]) for n in m["headers"].seq())
    return Settings(trusted_proxies=tuple(nets), headers=headers, truncation=truncation)


def is_address_header(name: str) -> bool:
    """A header named for an address. `_` counts as `-`: CGI servers (PHP's HTTP_X_FORWARDED_FOR) read
    X_Forwarded_For as X-Forwarded-For."""
    return name.lower().replace("_", "-") in _ADDRESS_NAMES


# Tokens of a header value: list elements, parameters and words (RFC 9110 5.6.1 lists, RFC 7239 pairs).
_TOKENS = re.compile(r"[\s,;]+")
_STRIP = "\"'()<>"
_ADDRESS_START = frozenset("0123456789abcdefABCDEF:[")  # a digit, a hex group, '::' or '[v6]'


def holds_address(value: str, t: Truncation = truncate.DEFAULT) -> bool:
    """True when a header value holds an IP address with more than its truncated prefix: a whole list
    element, parameter value (`for=`, `by=`, any `name=`) or word, bare, with a port, bracketed, quoted or
    with a /prefix length, in any spelling truncate.parse_address reads (IPv6 embedding IPv4 included).

    Only whole tokens count, so versions inside other words (Chrome/120.0.0.0, q=0.9) are no address, and
    an address already at its truncated form (Chrome's reduced 120.0.0.0, GREASE "8.0.0.0" in
    Sec-CH-UA-Full-Version-List, privproxy's own truncated X-Forwarded-For) holds nothing to remove."""
    if "." not in value and ":" not in value:  # every address spelling has one: the common header is done here
        return False
    for token in _TOKENS.split(value):
        token = token.strip(_STRIP)
        if "=" in token:
            token = token.partition("=")[2].strip(_STRIP)
        if (("." in token or ":" in token) and token[:1] in _ADDRESS_START) and _full_address(token, t):
            return True
    return False


def _full_address(token: str, t: Truncation) -> bool:
    address, slash, length = token.partition("/")
    if slash and not (length.isascii() and length.isdigit()):
        return False  # a path or a product/version (Chrome/120.0.0.0), not a CIDR
    ip = truncate.parse_address(address)
    if ip is None:
        return False
    return truncate.truncate_ip(ip, t) != str(ip)


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


def parse_viewer_address(text: str) -> IPAddress | None:
    """CloudFront-Viewer-Address `ip:port`: IPv6 is written without brackets (2001:db8::1:443), so the port
    is what follows the last colon, never a part of the address."""
    text = text.strip()
    if text.startswith("["):
        return parse_hop(text)
    host, colon, port = text.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()):
        return None
    return truncate.parse_ip(host)


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


def _rightmost(values: list[str]) -> str | None:
    """The last list member of a header (X-Forwarded-Proto): the value the proxy nearest to us wrote."""
    items = [p.strip() for v in values for p in v.split(",")]
    return items[-1] if items else None


def _is_https(proto: str | None) -> bool:
    return proto is not None and proto.strip().lower() == "https"


def resolve(peer: str, tls: bool, get_all: Callable[[str], list[str]], settings: Settings) -> Client | None:
    """The client behind a connection; None when even the peer address is unusable."""
    peer_ip = truncate.parse_ip(peer)
    if peer_ip is None:
        return None
    t = settings.truncation

    def client(ip: IPAddress, https: bool, **flags: bool) -> Client:
        return Client(ip, truncate.truncate_ip(ip, t), truncate.family(ip), https, **flags)

    if not settings.is_trusted(peer_ip):
        # Anyone can write these headers: from an untrusted peer they are only a sign of spoofing.
        spoof = any(get_all(h) for h in ("x-forwarded-for", "forwarded", "x-forwarded-proto",
                                         *SINGLE_ADDRESS_HEADERS))
        return client(peer_ip, tls, ignored_headers=spoof)
    name, values = next(((n, v) for n in settings.headers if (v := get_all(n))), ("", []))
    if not values:
        return client(peer_ip, tls)
    if name in SINGLE_ADDRESS_HEADERS:
        # The edge that accepted the client's connection wrote one address. Two of them (a repeated header,
        # a list) mean someone else wrote one too and we cannot tell which: the proxy itself stands in.
        https = tls or _is_https(_rightmost(get_all("x-forwarded-proto")))
        parse = parse_viewer_address if name == "cloudfront-viewer-address" else parse_hop
        ip = parse(values[0]) if len(values) == 1 and "," not in values[0] else None
        if ip is None:
            return client(peer_ip, https, via_proxy=True, malformed=True)
        return client(ip, https, via_proxy=True)
    elements = forwarded_elements(values) if name == "forwarded" else []
    hops = [e.get("for", "") for e in elements] if name == "forwarded" else [h for v in values for h in v.split(",")]
    found, malformed, last = peer_ip, False, len(hops) - 1
    for i in range(len(hops) - 1, -1, -1):
        last = i
        ip = parse_hop(hops[i])
        if ip is None:
            malformed = True
            break
        found = ip
        if not settings.is_trusted(ip):
            break
    if name == "forwarded":
        # Each proxy appends an element about the connection it accepted, so the element where the walk
        # stopped was written by a trusted proxy about the client's own connection: its proto is the
        # client's scheme. Elements further left are the client's; elements further right describe hops
        # between our proxies (an HTTPS hop behind a plain-HTTP edge must not make the request HTTPS).
        https = tls or (bool(elements) and _is_https(elements[last].get("proto")))
    else:
        # The rightmost X-Forwarded-Proto was written by the proxy nearest to us; a client-written value
        # further left must never turn plain HTTP into "HTTPS" and so skip the redirect.
        https = tls or _is_https(_rightmost(get_all("x-forwarded-proto")))
    return client(found, https, via_proxy=True, malformed=malformed)
