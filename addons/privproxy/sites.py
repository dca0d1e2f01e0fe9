"""[sites] Which origin serves which Host: the default site comes from --upstream, others from filters.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from privproxy import vendors
from privproxy.schema_types import arr, obj, string, table

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node


@dataclass(frozen=True, slots=True)
class Upstream:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    upstream: Upstream | None  # None: the default site, whose upstream is the proxy's --upstream
    hosts: tuple[str, ...] = ()
    beacon_paths: tuple[tuple[str, str], ...] = ()  # (path pattern, vendor): this site's collection paths

    def matches(self, host: str) -> bool:
        for pattern in self.hosts:
            if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False


def parse_upstream(url: str) -> Upstream:
    """'http://127.0.0.1:8080' -> Upstream; raises ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the scheme must be http or https, e.g. http://127.0.0.1:8080")
    if not parts.hostname:
        raise ValueError("a host is missing, e.g. http://127.0.0.1:8080")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("give only scheme://host:port, without a path or query")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"bad port: {e}") from None
    return Upstream(parts.scheme, parts.hostname, port)


def host_only(host_header: str) -> str:
    """'Example.COM:8443' -> 'example.com'; '[::1]:80' -> '::1'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


@dataclass(frozen=True, slots=True)
class Sites:
    sites: tuple[Site, ...] = ()
    default: Site = Site("default", None)

    def for_host(self, host_header: str) -> Site:
        host = host_only(host_header)
        for site in self.sites:
            if site.matches(host):
                return site
        return self.default

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites) + (self.default.name,)


VENDOR = string("An analytics vendor.", enum=tuple(vendors.VENDORS))
BEACON_PATHS = table("This site's own first-party collection paths, each mapped to the vendor whose format it "
                     "receives, e.g. `/metrics/g/collect: ga4`.", VENDOR)
SITE = obj("A website behind the proxy.", {
    "hosts": arr("Host names (the visitor's Host header) that belong to this site.", string("A host name.")),
    "upstream": string("The origin server, e.g. http://10.0.0.5:8080."),
    "beacon_paths": BEACON_PATHS,
})
SCHEMA = table("Sites by name: Host names and their origin. `default` may set the upstream of `--upstream`.", SITE)


def parse(node: Node | None) -> Sites:
    if node is None:
        return Sites()
    out = []
    default = Sites().default
    for name, n in node.items():
        m = n.mapping(SITE.props)
        upstream = m["upstream"].parsed(parse_upstream, "upstream URL", "e.g. http://10.0.0.5:8080") \
            if "upstream" in m else None
        hosts = tuple(h.lower() for h in m["hosts"].strings()) if "hosts" in m else ()
        paths = parse_beacon_paths(m["beacon_paths"]) if "beacon_paths" in m else ()
        if name == "default":
            default = Site("default", upstream, hosts, paths)
            continue
        if "upstream" not in m:
            n.error("a site needs an `upstream`", "add `upstream: http://host:port`")
        if not hosts:
            n.error("a site needs `hosts`", "add `hosts: [www.example.com]`")
        out.append(Site(name, upstream, hosts, paths))
    return Sites(tuple(out), default)


def parse_beacon_paths(node: Node) -> tuple[tuple[str, str], ...]:
    """Collection paths (`sites.*.beacon_paths`, `beacons.paths`): path pattern -> vendor."""
    out = []
    for path, n in node.items():
        if not path.startswith(("/", "*")):
            n.error(f"`{path}` is not a path", "collection paths start with / (or * to match any prefix)")
        out.append((path, n.choice(tuple(vendors.VENDORS), "ga4")))
    return tuple(out)
