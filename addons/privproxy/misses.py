"""Texts an expensive check found nothing in, remembered so that it runs once per text (bounded, keyed hashes).

A visitor's headers and a site's field names, event names and version strings come back in request after request;
the address check on header values (client_ip.Settings.holds_address) and the detectors (detectors.Settings.hits)
read each only once. What is kept is Python's per-process keyed hash (SipHash) of each text, never the text: a
Cookie, or a customer number no detector knows, is personal data. A collision, about 2^-52 per lookup with the set
full, would let one text skip the check. Those odds need a 64-bit hash: on a narrower one nothing is remembered.
"""

from __future__ import annotations

import sys

WIDE_HASH = sys.hash_info.width >= 64


class Misses:
    """Hashes of texts up to `longest` characters, at most `size` of them (emptied when full)."""

    __slots__ = ("longest", "size", "_seen")

    def __init__(self, longest: int, size: int = 4096) -> None:
        self.longest = longest if WIDE_HASH else -1
        self.size = size
        self._seen: dict[int, None] = {}

    def __contains__(self, text: str) -> bool:
        return len(text) <= self.longest and hash(text) in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, text: str) -> None:
        if len(text) <= self.longest:
            if len(self._seen) >= self.size:
                self._seen.clear()
            self._seen[hash(text)] = None
