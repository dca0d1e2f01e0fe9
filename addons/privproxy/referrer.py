"""[referrer] How much of a Referer the access log keeps (C2, C9): an external referrer, a page of another site,
is cut to its origin by default, so a search engine's `q=john+doe+555-123-4567` never reaches the log; the
site's own pages keep their path and query. What is kept then passes the URL rules (Scrubber.url).

The levels are Matomo's referrer anonymization (exclude_none, exclude_query, exclude_path, exclude_all):
`keep`, `strip_query`, `origin`, `drop`. Internal means the referrer's host is one of the site's own hosts
(sites.<name>.hosts, and for the proxy the request's Host; for filter-log, which reads no Host, its --site-host).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from privproxy.schema_types import obj, string

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

LEVELS = ("keep", "strip_query", "origin", "drop")
# scheme://authority, as Scrubber.url's split_origin reads it; a referrer without one is a path of this site
_ORIGIN = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/?#]*)")


@dataclass(frozen=True, slots=True)
class Settings:
    """The `referrer:` section."""

    external: str = "origin"
    internal: str = "keep"

    def reduce(self, url: str, own: Callable[[str], bool]) -> str:
        """`url` at the level for its kind: internal when it names no host or `own(host)` (a lower-case host
        name without port or credentials), external otherwise. "" when nothing is kept."""
        if self.external == self.internal == "keep":
            return url
        m = _ORIGIN.match(url)
        internal = m is None or own(host_name(m.group(1)))
        level = self.internal if internal else self.external
        return url if level == "keep" else cut(url, level, m)


def host_name(authority: str) -> str:
    """'u:pw@Shop.Example.:8443' -> 'shop.example'; '[2001:db8::1]:80' -> '2001:db8::1'."""
    # Referrers name a few hosts over and over (search engines, the site itself); a cache entry holds its key,
    # so one longer than a host name (a request can send kilobytes) is worked out each time instead.
    return _host_name(authority) if len(authority) <= 256 else _host_name.__wrapped__(authority)


@lru_cache(maxsize=1024)
def _host_name(authority: str) -> str:
    host = authority.rpartition("@")[2].lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


_QUERY_OR_FRAGMENT = re.compile(r"[?#]")


def cut(url: str, level: str, m: re.Match[str] | None = None) -> str:
    """`url` without its query and fragment (strip_query), reduced to scheme://authority (origin), or ""."""
    if level == "drop":
        return ""
    if level == "strip_query":
        return _QUERY_OR_FRAGMENT.split(url, maxsplit=1)[0]
    m = m if m is not None else _ORIGIN.match(url)
    return m.group(0) if m is not None else ""  # a relative referrer has no origin of its own


DEFAULT = Settings()
SCHEMA = obj("How much of a referrer the access log keeps (C2, C9); what is kept passes the URL rules. "
             "Matomo's levels: keep (exclude_none), strip_query (exclude_query), origin (exclude_path), drop "
             "(exclude_all).", {
                 "external": string("A page of another site (not one of the site's hosts).", enum=LEVELS,
                                    default=DEFAULT.external),
                 "internal": string("A page of the site itself (or a referrer without a host).", enum=LEVELS,
                                    default=DEFAULT.internal),
             })


def parse(node: Node | None) -> Settings:
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    return Settings(external=SCHEMA.read(m, "external"), internal=SCHEMA.read(m, "internal"))
