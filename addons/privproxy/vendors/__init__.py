"""[vendors] The analytics codecs, one module per vendor, and which first-party path belongs to which.

Paths are matched on the canonical path (privproxy.target), case-insensitively and with or without a trailing
slash; `*` at the end matches any rest (`/b/ss/*`), `*` at the start any prefix (`*/matomo.php`). filters.yaml
can add paths per site or for every site (`beacons.paths`).
"""

from __future__ import annotations

from privproxy.vendors import (adobe, amplitude, ga4, matomo, meta_pixel, mixpanel, plausible, posthog, segment,
                               snowplow, universal_analytics)
from privproxy.vendors.base import Beacon, Codec, CodecError, Limits, gunzip

# Order matters only for paths two vendors share: `/batch` is Amplitude's JSON and UA's line format (sniffed).
VENDORS: dict[str, Codec] = {m.name: m for m in (  # type: ignore[misc]
    ga4, universal_analytics, matomo, snowplow, segment, mixpanel, amplitude, posthog, meta_pixel, adobe,
    plausible)}


def _key(pattern: str) -> str:
    return pattern.lower().rstrip("/") or "/"


# A path spelled as a vendor spells it belongs to that vendor (PostHog's `/batch/` is not UA's `/batch`); any
# other spelling of it (see privproxy.target: case-folded, no trailing slash) to the first vendor listing the
# key, and goes out in that vendor's spelling.
_SPELLED: dict[str, Codec] = {}
_EXACT: dict[str, tuple[Codec, str]] = {}
_WILD: list[tuple[str, Codec]] = []
for _codec in VENDORS.values():
    for _p in _codec.paths:
        if _p.startswith("*") or _p.endswith("*"):
            _WILD.append((_p, _codec))
        else:
            _SPELLED.setdefault(_p, _codec)
            _EXACT.setdefault(_key(_p), (_codec, _p))
# Keys several vendors spell their own way (`/batch` UA and Amplitude, `/batch/` PostHog; `/track` Mixpanel,
# `/track/` also PostHog): another spelling of them could be meant for either, so it is no beacon of one.
AMBIGUOUS = frozenset(k for k in _EXACT
                      if len({c.name for c in VENDORS.values() for p in c.paths if "*" not in p and _key(p) == k}) > 1)


class AmbiguousPath(ValueError):
    """A collection path spelled so that it could be two vendors' (see AMBIGUOUS): refused, never guessed."""


def path_matches(pattern: str, path: str) -> str | None:
    """The spelling a beacon on canonical `path` is forwarded in when `pattern` matches it, else None.

    Patterns match case-insensitively and regardless of a trailing slash, as an origin's `location ~*` or a
    case-insensitive file system would route them; `*` at the end matches any rest, at the start any prefix."""
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        if not path.lower().startswith(prefix.lower()):
            return None
        head_ok = path[:len(prefix)].lower() == prefix.lower()  # False only where lower() changed a length
        return prefix + (path[len(prefix):] if head_ok else "")
    if pattern.startswith("*"):
        suffix = pattern[1:]
        if not _key(path).endswith(_key(suffix)):
            return None
        stripped = path.rstrip("/")
        if stripped[len(stripped) - len(suffix):].lower() == suffix.lower():
            return stripped[:len(stripped) - len(suffix)] + suffix
        return suffix
    return pattern if _key(path) == _key(pattern) else None


def codec_for_path(path: str) -> tuple[Codec, str] | None:
    """The vendor whose default collection path the canonical `path` is, and the spelling to forward."""
    spelled = _SPELLED.get(path)
    if spelled is not None:
        return spelled, path
    got = _EXACT.get(_key(path))
    if got is not None:
        if _key(path) in AMBIGUOUS:
            raise AmbiguousPath(path)
        return got
    for pattern, codec in _WILD:
        spelling = path_matches(pattern, path)
        if spelling is not None:
            return codec, spelling
    return None


def sniff(codec: Codec, beacon: Beacon) -> Codec:
    """Settle paths two vendors share by the body: `/batch` with JSON or Amplitude's legacy form is Amplitude,
    with hit lines UA."""
    if beacon.path.rstrip("/") == "/batch" and codec.name in ("amplitude", "universal_analytics"):
        body = beacon.body
        if body[:2] == b"\x1f\x8b":  # gzip (with or without Content-Encoding): decide on all it holds
            try:
                body = gunzip(body, Limits())  # every member: a first member alone could look like the other vendor
            except CodecError:
                return VENDORS["amplitude"]  # undecodable either way; its decoder refuses it
        head = body[:64].lstrip()
        looks_json = head.startswith((b"{", b"["))
        # Amplitude's legacy form upload: client=<api key>&e=<events>; UA hits never carry `client`.
        legacy = b"client=" in body and (body.startswith(b"e=") or b"&e=" in body)
        return VENDORS["amplitude"] if looks_json or legacy else VENDORS["universal_analytics"]
    return codec


__all__ = ["AMBIGUOUS", "VENDORS", "AmbiguousPath", "codec_for_path", "path_matches", "sniff"]
