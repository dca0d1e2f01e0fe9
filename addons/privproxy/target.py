"""The request target as the server behind privproxy reads it: one canonical path for every rule (C1, C2, C4, C10).

nginx decodes `%XX` (including `%2F`), merges slashes and resolves dot segments before it picks a location;
Java containers also drop `;params` from each segment; browsers (the WHATWG URL parser) read `\\` as `/`.
A rule matched on the spelling as sent misses `//g/collect`, `/g/%63ollect` or `/a/../health/x`, while the
origin routes them where the rule was meant to apply. So every matcher (vendor paths, beacon_paths,
sensitive paths, the HTTPS exemption) uses `Target.path` or `Target.key`, and a target that no server can
read unambiguously (bad percent-encoding, NUL, `..` above the root, controls) is refused, as nginx refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from privproxy.percent import unquote

# Characters a canonical path keeps literally: RFC 3986 pchar minus `;` (params are split off) plus `/`.
PATH_SAFE = "/:@!$&'()*+,=-._~"
# What a request target may not contain (RFC 9112 3.2, RFC 3986): it may hold visible ASCII except `#`, plus bytes
# >= 0x80, which nginx accepts and browsers never send unencoded; controls, space and DEL never.
BAD_CHAR = re.compile(r"[\x00-\x20\x7f#]")
# Anything that makes the spelling differ from the canonical form; most requests have none of these.
_COMPLEX = re.compile(r"%|//|/\.|;|\\")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ABSOLUTE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$", re.S)


class TargetError(ValueError):
    """A request target that cannot be read one way only; `reason` is a bounded metric label."""

    REASONS = ("bad_character", "bad_percent", "nul", "above_root", "bad_form")

    def __init__(self, reason: str) -> None:
        assert reason in self.REASONS, reason
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Target:
    raw: str  # origin-form as sent (an absolute-form target is reduced to this)
    path: str  # canonical: decoded, `\\` as `/`, slashes merged, dot segments resolved, params split off
    query: str | None  # as sent, without `?`; None when there is no `?`
    params: tuple[tuple[int, str], ...] = ()  # (segment index, `;params` text) split off the decoded path
    authority: str = ""  # the authority of an absolute-form target ("" for origin-form)

    @property
    def key(self) -> str:
        """What matchers compare: the canonical path case-folded, without a trailing slash."""
        return match_key(self.path)

    @property
    def raw_path(self) -> str:
        return self.raw.partition("?")[0]

    @property
    def canonical(self) -> bool:
        """True when the path was sent in its canonical spelling (no decoding or resolving was needed)."""
        return not self.params and encode_path(self.path) == self.raw_path

    def origin_form(self, path: str | None = None) -> str:
        """`path` (default: the canonical path), encoded, with the query as sent."""
        out = encode_path(self.path if path is None else path)
        return out if self.query is None else f"{out}?{self.query}"


def match_key(path: str) -> str:
    key = path.lower()
    return key.rstrip("/") or "/" if len(key) > 1 else key


def encode_path(path: str) -> str:
    return quote(path, safe=PATH_SAFE)


def parse(raw: str) -> Target:
    """The canonical Target of a request target (origin-form, absolute-form or `*`); raises TargetError.
    An absolute-form target keeps its authority, which the caller checks against the Host."""
    if raw.startswith("/"):
        return _read(raw, "")
    if raw == "*":
        return Target("*", "*", None)
    m = _ABSOLUTE.match(raw)
    if m is None or m.group(1).lower() not in ("http", "https"):
        raise TargetError("bad_form")
    authority, rest = m.group(2), m.group(3) or "/"
    if rest.startswith("?"):
        rest = "/" + rest
    if not rest.startswith("/") or not authority:
        raise TargetError("bad_form")
    return _read(rest, authority)


def plain(path: str) -> bool:
    """True when the origin-form `path` is read as itself: parse(path).path == path, without a TargetError.

    Most paths are (no `%`, `//`, `/.`, `;`, `\\`, `?` or refused character): two C searches say so, where a
    parse of a path not seen before costs a cache miss and a Target, several times more (filter-log meets a new
    path on most lines; tests/unit/test_log_filter.py checks the two agree)."""
    if path[:1] != "/" or "?" in path:
        return False
    if path.isascii() and path.isprintable():  # BAD_CHAR is then a space or '#': substring tests are faster
        return not (" " in path or "#" in path or "%" in path or "//" in path or "/." in path or ";" in path
                    or "\\" in path)
    return BAD_CHAR.search(path) is None and _COMPLEX.search(path) is None


CACHED = 2048  # characters: longer targets are read each time, so the cache's memory stays bounded


def _read(raw: str, authority: str) -> Target:
    return _cached(raw, authority) if len(raw) <= CACHED else _parse(raw, authority)


def _parse(raw: str, authority: str) -> Target:
    if BAD_CHAR.search(raw):
        raise TargetError("bad_character")
    path, sep, query = raw.partition("?")
    if not _COMPLEX.search(path):
        return Target(raw, path, query if sep else None, (), authority)
    segments, params, trailing = _segments(_decode(path))
    canonical = "/" + "/".join(segments) + ("/" if trailing and segments else "")
    return Target(raw, canonical, query if sep else None, tuple(params), authority)


_cached = lru_cache(maxsize=16384)(_parse)  # page targets repeat; a cached Target is immutable


def _decode(path: str) -> str:
    """Percent-decoding as nginx does it: every `%XX`, once; a `%` without two hex digits, or a decoded NUL,
    is a bad request (nginx answers 400 too). Bytes are decoded as UTF-8 where they form it."""
    if "%" not in path:
        return path
    data = path.encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x25:  # %
            if i + 2 >= n:
                raise TargetError("bad_percent")
            h1, h2 = data[i + 1], data[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                raise TargetError("bad_percent")
            v = int(data[i + 1:i + 3], 16)
            if v == 0:
                raise TargetError("nul")
            out.append(v)
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _segments(decoded: str) -> tuple[list[str], list[tuple[int, str]], bool]:
    """RFC 3986 5.2.4 dot-segment removal over `/`- and `\\`-separated segments, empty ones merged, each
    segment's `;params` split off first (`..;x` is `..` to Tomcat). `..` above the root is refused."""
    out: list[str] = []
    params: list[tuple[int, str]] = []
    parts = decoded.replace("\\", "/").split("/")
    trailing = parts[-1] == "" or parts[-1].partition(";")[0] in (".", "..")
    for part in parts:
        name, semi, rest = part.partition(";")
        if name == "..":
            if not out:
                raise TargetError("above_root")
            out.pop()
            params = [(i, p) for i, p in params if i < len(out)]
            continue
        if name in ("", "."):
            if semi and rest and out:  # `/a/;jsessionid=x`: the params belong to the segment before
                params.append((len(out) - 1, rest))
            continue
        if semi and rest:
            params.append((len(out), rest))
        out.append(name)
    return out, params, trailing


_STRUCTURE = re.compile(r"//|/\.|;|\\|%2[eE]")


def needs_resolution(path: str) -> bool:
    """True when the path's segments as sent are not already its segments (empty, dot or `;params` ones)."""
    return _STRUCTURE.search(path) is not None


def raw_segments(path: str) -> tuple[list[tuple[str, str]], bool]:
    """The path's segments in their spelling as sent, with empty and dot segments resolved, each as
    (segment without params, `;params` text), and whether a trailing slash remains.

    Unlike `parse`, `%2F` stays inside its segment here: this is how a logged path keeps the spelling its
    segments were sent in (and an encoded URL stays one segment, to be redacted whole); `..` above the root
    stops at the root instead of failing, since referrers and nested URLs are never refused."""
    out: list[tuple[str, str]] = []
    parts = path.replace("\\", "/").split("/")
    trailing = False
    for part in parts:
        name, _, params = part.partition(";")
        dots = unquote(name) if "%" in name else name
        trailing = dots in ("", ".", "..")
        if dots == "..":
            if out:
                out.pop()
            continue
        if dots in ("", "."):
            if params and out:
                out[-1] = (out[-1][0], f"{out[-1][1]};{params}" if out[-1][1] else params)
            continue
        out.append((name, params))
    return out, trailing
