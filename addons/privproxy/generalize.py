"""Generalization: user agents to family, major version and OS family (ua-parser), screens to buckets, URLs to path
templates (C9, C10)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import ua_parser

# In-app browsers ua-parser's regexes do not name (it reads WeChat's as the Android WebView it embeds).
_IN_APP = (("WeChat", re.compile(r"MicroMessenger/(\d+)")), ("KakaoTalk", re.compile(r"KAKAOTALK (\d+)")),
           ("TikTok", re.compile(r"(?:musical_ly|TikTok)[_ /](\d+)|BytedanceWebview/(\d*)")),
           ("Snapchat", re.compile(r"Snapchat/(\d+)")), ("Pinterest", re.compile(r"\[Pinterest/\w+ (\d*)")))
# Names agents give themselves that ua-parser does not mark as crawlers (its device family "Spider").
_BOTS = re.compile(r"bot\b|crawler|spider|slurp|facebookexternalhit|headless", re.I)
# ua-parser's families, merged where the difference identifies a device more than it tells a browser apart.
_FAMILIES = {"Chrome Mobile": "Chrome", "Chrome Mobile iOS": "Chrome", "Firefox Mobile": "Firefox",
             "Firefox iOS": "Firefox", "Mobile Safari": "Safari", "Mobile Safari UI/WKWebView": "Safari",
             "Edge Mobile": "Edge", "Opera Mobile": "Opera"}
_OS_FAMILIES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS", "Ubuntu": "Linux", "Fedora": "Linux",
                "Debian": "Linux", "Arch Linux": "Linux", "Linux Mint": "Linux", "openSUSE": "Linux"}
# A family ua-parser copied out of the agent (`(\w+)bot` rules) is the sender's text: kept only while it reads as a
# product name, never as an identifier (digits runs, '@', long strings).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 ._/-]{0,39}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_PARSED = 1024  # real agents are a few hundred characters; ua-parser's regexes get no more than this


@dataclass(frozen=True, slots=True)
class Agent:
    """A user agent as the logs keep it: family, major version, OS family; `bot` for crawlers."""

    family: str = ""
    major: str = ""
    os: str = ""
    bot: bool = False

    def __str__(self) -> str:
        if not self.family:
            return ""
        name = f"{self.family} {self.major}" if self.major else self.family
        return f"{name} (bot)" if self.bot else f"{name} ({self.os or 'Other'})"


def warm() -> None:
    """Have ua-parser compile its regexes now (a few tenths of a second, once per process) rather than on the
    first request's log record; filter-log's forked workers inherit them."""
    _agent.__wrapped__("Mozilla/5.0")


def user_agent(ua: str) -> str:
    """'Chrome 120 (Windows)', 'Googlebot 2 (bot)': enough for browser statistics, far too little to fingerprint."""
    return str(agent(ua))


def agent(ua: str) -> Agent:
    """The Agent of a User-Agent (ua-parser's maintained regexes, remembered: agents repeat)."""
    # A cache entry holds its key, and 4096 of 60 KB agents from a request head's 64 KiB would hold 256 MiB
    # (issue 17): an agent longer than real ones is read from its first _MAX_PARSED characters, uncached.
    return _agent(ua) if len(ua) <= _MAX_PARSED else _agent.__wrapped__(ua[:_MAX_PARSED])


@lru_cache(maxsize=4096)  # a site sees a few hundred distinct agents; parsing is the costly part
def _agent(ua: str) -> Agent:
    if not ua:
        return Agent()
    if not ua.isascii():  # bytes that were not UTF-8 arrive as lone surrogates, which RE2 cannot read
        ua = _SURROGATE.sub("\ufffd", ua)
    family, major = "", ""
    for name, pattern in _IN_APP:
        m = pattern.search(ua)
        if m:
            family, major = name, next((g for g in m.groups() if g), "")
            break
    parsed = ua_parser.parse(ua)
    bot = (parsed.device is not None and parsed.device.family == "Spider") or _BOTS.search(ua) is not None
    if not family and parsed.user_agent is not None:
        family = _FAMILIES.get(parsed.user_agent.family, parsed.user_agent.family)
        major = parsed.user_agent.major or ""
    if not _NAME.fullmatch(family) or sum(c.isdigit() for c in family) > 3:
        family, major = ("Bot" if bot else "Other"), ""
    if not (major.isascii() and major.isdigit()) or len(major) > 5:
        major = ""
    os_name = "Other"
    if parsed.os is not None and _NAME.fullmatch(parsed.os.family):
        os_name = _OS_FAMILIES.get(parsed.os.family, parsed.os.family)
    return Agent(family, major, os_name, bot)


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
