"""[beacons.scripts] The tracker scripts privproxy serves from first-party paths: kept as long as the vendor's
Cache-Control allows (bounded), served stale when the vendor fails, bounded in bytes (C5, C15).

Plain Python and synchronous: the fetching (asyncio, httpx) is privproxy.gateway.VendorClient, driven by the
adapter privproxy.mitm.gateway, which also makes concurrent misses for one script wait for a single fetch.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TTL = 300.0  # seconds, when the vendor says nothing (RFC 9111 §4.2.2 would allow a heuristic)
MAX_TTL = 86400.0  # at most a day between fetches, whatever the vendor says: its updates reach the site
STALE_FOR = 7 * 86400.0  # an expired copy is still served this long while the vendor fails
MAX_SCRIPT = 2 * 1024 * 1024  # one script; larger ones are refused (too_large)
MAX_TOTAL = 16 * 1024 * 1024  # all scripts together; the least recently used go first
JAVASCRIPT = "text/javascript; charset=utf-8"  # RFC 9239
REQUEST_HEADERS = (("Accept", "*/*"), ("Accept-Encoding", "identity"), ("User-Agent", "privproxy"))

_DIRECTIVE = re.compile(r"\s*([A-Za-z-]+)\s*(?:=\s*\"?(\d+)\"?)?\s*(?:,|$)")


def ttl(cache_control: str) -> float:
    """How long a copy is fresh by the vendor's Cache-Control (s-maxage before max-age; no-store, no-cache and
    private: not at all), within [0, MAX_TTL]; DEFAULT_TTL when it says nothing about age."""
    directives: dict[str, str | None] = {}
    for m in _DIRECTIVE.finditer(cache_control or ""):
        directives[m.group(1).lower()] = m.group(2)
    if {"no-store", "no-cache", "private"} & directives.keys():
        return 0.0
    for name in ("s-maxage", "max-age"):
        value = directives.get(name)
        if value is not None:
            return min(float(value), MAX_TTL)
    return DEFAULT_TTL


def content_type(vendor_type: str, url: str) -> str:
    """The Content-Type the browser gets: the vendor's when it names a script, else JavaScript for a `.js` URL
    (browsers refuse a script served as text/plain or HTML under `nosniff`), else the vendor's."""
    kind = vendor_type.split(";", 1)[0].strip().lower()
    if "javascript" in kind or "ecmascript" in kind:
        return vendor_type
    if urlsplit(url).path.lower().endswith((".js", ".mjs")) or not kind:
        return JAVASCRIPT
    return vendor_type


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    content_type: str
    fetched: float  # time.monotonic() of the fetch
    ttl: float

    def fresh(self, now: float) -> bool:
        return now - self.fetched < self.ttl

    def remaining(self, now: float) -> int:
        """Seconds the browser may keep it (Cache-Control max-age): what is left of the vendor's allowance."""
        return max(0, int(self.ttl - (now - self.fetched)))


class ScriptCache:
    def __init__(self, max_total: int = MAX_TOTAL) -> None:
        self.max_total = max_total
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._size = 0

    def fresh(self, url: str, now: float) -> Entry | None:
        e = self._entries.get(url)
        if e is None or not e.fresh(now):
            return None
        self._entries.move_to_end(url)
        return e

    def stale(self, url: str, now: float) -> Entry | None:
        """An expired copy, while the vendor fails (for up to STALE_FOR past its freshness)."""
        e = self._entries.get(url)
        if e is None or now - e.fetched > e.ttl + STALE_FOR:
            return None
        return e

    def store(self, url: str, entry: Entry) -> None:
        """Keep `entry` (even with ttl 0: it is what a failing vendor's visitors get); the least recently used go
        when the total would pass max_total."""
        if len(entry.body) > MAX_SCRIPT:
            return
        old = self._entries.pop(url, None)
        if old is not None:
            self._size -= len(old.body)
        self._entries[url] = entry
        self._size += len(entry.body)
        while self._size > self.max_total and len(self._entries) > 1:
            _, gone = self._entries.popitem(last=False)
            self._size -= len(gone.body)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)
