"""[vendors] The analytics codecs, one module per vendor, and which first-party path belongs to which.

Paths are matched exactly, `*` at the end matches any rest (`/b/ss/*`), `*` at the start any prefix
(`*/matomo.php`). filters.yaml can add paths per site or for every site (`beacons.paths`).
"""

from __future__ import annotations

import zlib

from privproxy.vendors import (adobe, amplitude, ga4, matomo, meta_pixel, mixpanel, plausible, posthog, segment,
                               snowplow, universal_analytics)
from privproxy.vendors.base import Beacon, Codec

SNIFF_BYTES = 4096  # of a compressed /batch body, inflated only to tell the two vendors apart

# Order matters only for paths two vendors share: `/batch` is Amplitude's JSON and UA's line format (sniffed).
VENDORS: dict[str, Codec] = {m.name: m for m in (  # type: ignore[misc]
    ga4, universal_analytics, matomo, snowplow, segment, mixpanel, amplitude, posthog, meta_pixel, adobe,
    plausible)}

_EXACT: dict[str, Codec] = {}
_PREFIX: list[tuple[str, Codec]] = []
_SUFFIX: list[tuple[str, Codec]] = []
for _codec in VENDORS.values():
    for _p in _codec.paths:
        if _p.endswith("*"):
            _PREFIX.append((_p[:-1], _codec))
        elif _p.startswith("*"):
            _SUFFIX.append((_p[1:], _codec))
        else:
            _EXACT.setdefault(_p, _codec)


def path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def codec_for_path(path: str) -> Codec | None:
    """The vendor whose default collection path this is (path without the query)."""
    got = _EXACT.get(path)
    if got is not None:
        return got
    for prefix, codec in _PREFIX:
        if path.startswith(prefix):
            return codec
    for suffix, codec in _SUFFIX:
        if path.endswith(suffix):
            return codec
    return None


def sniff(codec: Codec, beacon: Beacon) -> Codec:
    """Settle paths two vendors share by the body: `/batch` with JSON or Amplitude's legacy form is Amplitude,
    with hit lines UA."""
    if beacon.path.rstrip("/") == "/batch" and codec.name in ("amplitude", "universal_analytics"):
        body = beacon.body
        if body[:2] == b"\x1f\x8b":  # gzip (with or without Content-Encoding): decide on what it holds
            try:
                body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, SNIFF_BYTES)
            except zlib.error:
                return VENDORS["amplitude"]  # undecodable either way; its decoder refuses it
        head = body[:64].lstrip()
        looks_json = head.startswith((b"{", b"["))
        # Amplitude's legacy form upload: client=<api key>&e=<events>; UA hits never carry `client`.
        legacy = b"client=" in body and (body.startswith(b"e=") or b"&e=" in body)
        return VENDORS["amplitude"] if looks_json or legacy else VENDORS["universal_analytics"]
    return codec


__all__ = ["VENDORS", "codec_for_path", "path_matches", "sniff"]
