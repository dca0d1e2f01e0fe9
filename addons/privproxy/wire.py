"""What RFC 9110, 9112 and 9113 allow in a request head, checked before anything is matched or forwarded (C15).

A lenient origin reads a field value with a bare CR, an obs-fold or a NUL as something else than privproxy
did, and a Host spelled `shop.example.com.` or `host:1:2` as another virtual host: such requests are refused
(400), never forwarded. Host names are compared as nginx's virtual hosts compare them: case-folded, without
a trailing dot, without the port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2
# field-value: VCHAR, obs-text, SP and HTAB inside; CR, LF (an obs-fold arrives as CR LF SP), NUL, other CTLs never.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:({_LABEL}(?:\.{_LABEL})*)\.?|(\[[0-9A-Fa-f:.]+\]))(?::(\d{{1,5}}))?")
# Why a request head is refused (a metric label): these, and `ambiguous_path`, a collection path spelled so that
# it could be two vendors' (privproxy.vendors.AMBIGUOUS).
REASONS = ("bad_method", "bad_header_name", "bad_header_value", "bad_host", "duplicate_host", "bad_target",
           "ambiguous_path")


def check_head(method: str, fields: Iterable[tuple[str, str]], hosts: int) -> str | None:
    """The reason the request head is refused (a REASONS value), or None when it is well-formed.
    `fields` are (lower-case name, value) pairs as sent; `hosts` counts the Host fields."""
    if not TOKEN.fullmatch(method):
        return "bad_method"
    if hosts > 1:
        return "duplicate_host"  # RFC 9112 3.2: two Hosts is a 400; each reader would pick another
    for name, value in fields:
        if not TOKEN.fullmatch(name):
            return "bad_header_name"
        if _BAD_VALUE.search(value):
            return "bad_header_value"
    return None


def canonical_host(value: str) -> str | None:
    """`Shop.Example.COM.:8443` -> `shop.example.com:8443`; None for what no virtual host can be (spaces,
    `host:1:2`, a port above 65535, an empty label)."""
    return _canonical_host(value) if len(value) <= 300 else None  # a DNS name has at most 253 characters


@lru_cache(maxsize=4096)
def _canonical_host(value: str) -> str | None:
    m = _HOST.fullmatch(value.strip())
    if m is None:
        return None
    name, literal, port = m.groups()
    if port is not None and int(port) > 65535:
        return None
    host = (name or literal).lower()
    return f"{host}:{port}" if port is not None else host


def host_name(canonical: str) -> str:
    """The name without its port: `shop.example.com:8443` -> `shop.example.com`; `[::1]:80` -> `::1`."""
    if canonical.startswith("["):
        return canonical[1:canonical.find("]")]
    return canonical.partition(":")[0]
