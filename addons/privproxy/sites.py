"""[sites] Which origin serves which Host: the default site comes from --upstream, others from filters.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


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
