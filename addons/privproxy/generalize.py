"""Generalization: user agents to family and major version, screens to buckets, URLs to path templates (C9, C10)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

# Order matters: Edge and Opera carry "Chrome/", Chrome carries "Safari/".
_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"(?:OPR|Opera)/(\d+)")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[\d.]* (?:Mobile/\w+ )?Safari/")),
    ("curl", re.compile(r"^curl/(\d+)")),
    ("Python", re.compile(r"^python-(?:requests|urllib3|httpx)/(\d+)|^Python-urllib/(\d+)")),
)
_BOTS = re.compile(r"bot|crawler|spider|slurp|facebookexternalhit|headless", re.I)
_OS = (
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Android", re.compile(r"Android")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Linux", re.compile(r"Linux|X11")),
)


def user_agent(ua: str) -> str:
    """'Chrome 120 (Windows)': enough for browser statistics, far too little to fingerprint."""
    # Real agents are a few hundred characters; a 60 KB one is scanned each time instead of being kept: a cache
    # entry holds its key, and 2048 of them from a request head's 64 KiB would hold 128 MiB (issue 17).
    return _user_agent(ua) if len(ua) <= 1024 else _user_agent.__wrapped__(ua)


@lru_cache(maxsize=2048)  # a site sees a few hundred distinct agents; the regex scan is the costly part
def _user_agent(ua: str) -> str:
    if not ua:
        return ""
    browser = "Other"
    for name, pattern in _BROWSERS:
        m = pattern.search(ua)
        if m:
            major = next((g for g in m.groups() if g), "")
            browser = f"{name} {major}".strip()
            break
    if _BOTS.search(ua):
        browser = "Bot" if browser == "Other" else f"{browser} (bot)"
    os_name = next((name for name, p in _OS if p.search(ua)), "Other")
    return f"{browser} ({os_name})"


SCREEN_BUCKETS = (360, 414, 768, 1024, 1280, 1440, 1920, 2560, 3840)
_SCREEN = re.compile(r"^\s*(\d{2,5})\s*[xX*×,]\s*(\d{2,5})\s*$")


def _bucket(n: int) -> int:
    for b in SCREEN_BUCKETS:
        if n <= b:
            return b
    return SCREEN_BUCKETS[-1]


def screen(value: str) -> str | None:
    """'1536x864' -> '1440x1024'-style buckets (each side rounded up to a common width); None if no size."""
    m = _SCREEN.match(value)
    if not m:
        return None
    return f"{_bucket(int(m.group(1)))}x{_bucket(int(m.group(2)))}"


_SEGMENT_TEMPLATES = (
    (re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"), ":uuid"),
    (re.compile(r"^\d+$"), ":id"),
    (re.compile(r"^[0-9a-fA-F]{16,}$"), ":hash"),
    (re.compile(r"^[A-Za-z0-9_-]{24,}$"), ":token"),
    (re.compile(r"@"), ":email"),
)


def path_template(path: str) -> str:
    """'/orders/12345/items/9f8e...' -> '/orders/:id/items/:hash' (query and fragment dropped)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    out = []
    for seg in path.split("/"):
        for pattern, name in _SEGMENT_TEMPLATES:
            if seg and pattern.search(seg):
                seg = name
                break
        out.append(seg)
    return "/".join(out)


def timestamp(value: str, unit: int = 3600) -> str | None:
    """Epoch seconds/milliseconds floored to `unit`, or an ISO date-time floored to the hour; None if neither."""
    v = value.strip()
    if v.isdigit() and 9 <= len(v) <= 16:
        n = int(v)
        scale = 1000 if len(v) >= 12 else 1  # milliseconds since the epoch have 13 digits today
        if len(v) >= 15:
            scale = 1_000_000
        return str((n // (unit * scale)) * unit * scale)
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.replace(minute=0, second=0, microsecond=0).isoformat()
