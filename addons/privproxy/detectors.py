"""[detectors] Find personal data in any value, whatever its field is called (C8).

Each finder returns the spans it is sure about: a pattern proposes, a check (Luhn, My Number check digit,
ipaddress) confirms, so order numbers, prices, dates and version strings survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from privproxy import truncate

type Finder = Callable[[str], Iterator[tuple[int, int]]]

EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}")
# International: +CC then 6-14 more digits, optionally grouped. Japanese domestic: 0 + area/mobile prefix,
# hyphenated (03-1234-5678, 090-1234-5678) or the bare 11-digit mobile/IP-phone form (0[5789]0xxxxxxxx).
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){1,4}"
    r"|0\d{1,4}-\d{1,4}-\d{3,4}|\(0\d{1,4}\)\s?\d{1,4}-\d{3,4}|0[5789]0\d{8})(?![\w])"
)
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
MYNUMBER = re.compile(r"(?<!\d)\d{4}[ -]?\d{4}[ -]?\d{4}(?!\d)")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|35|6[0245]|62)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mynumber_ok(digits: str) -> bool:
    """Japanese Individual Number check digit (Ordinance of the Ministry of Internal Affairs, Art. 5)."""
    if len(digits) != 12 or not digits.isdigit():
        return False
    body, check = digits[:11], int(digits[11])
    total = 0
    for n in range(1, 12):
        p = int(body[11 - n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    r = total % 11
    return check == (0 if r <= 1 else 11 - r)


def find_email(text: str) -> Iterator[tuple[int, int]]:
    if "@" in text:
        for m in EMAIL.finditer(text):
            yield m.span()


def find_phone(text: str) -> Iterator[tuple[int, int]]:
    for m in PHONE.finditer(text):
        digits = sum(c.isdigit() for c in m.group(0))
        if 9 <= digits <= 15:
            yield m.span()


def find_ip(text: str) -> Iterator[tuple[int, int]]:
    if "." in text or ":" in text:
        for m in truncate.IP_CANDIDATE.finditer(text):
            if truncate.parse_ip(m.group(0)) is not None:
                yield m.span()


def find_card(text: str) -> Iterator[tuple[int, int]]:
    for m in CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group(0))
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_ok(digits):
            yield m.span()


def find_mynumber(text: str) -> Iterator[tuple[int, int]]:
    for m in MYNUMBER.finditer(text):
        if mynumber_ok(re.sub(r"[ -]", "", m.group(0))):
            yield m.span()


def find_jwt(text: str) -> Iterator[tuple[int, int]]:
    if "eyJ" in text:
        for m in JWT.finditer(text):
            yield m.span()


FINDERS: dict[str, Finder] = {
    "email": find_email,
    "phone": find_phone,
    "ip": find_ip,
    "card": find_card,
    "mynumber": find_mynumber,
    "jwt": find_jwt,
}


@dataclass(frozen=True, slots=True)
class Hit:
    detector: str
    start: int
    end: int


def scan(text: str, enabled: tuple[str, ...]) -> list[Hit]:
    """Non-overlapping hits, earliest first; on overlap the detector listed first wins."""
    hits: list[Hit] = []
    for name in enabled:
        for start, end in FINDERS[name](text):
            if not any(h.start < end and start < h.end for h in hits):
                hits.append(Hit(name, start, end))
    hits.sort(key=lambda h: h.start)
    return hits


# What every finder's pattern needs at the least: '@' (email), 'eyJ' (JWT), '+' and a digit (international
# phone), a dotted run of digits (IPv4), two colons around at most four hex digits (IPv6), or nine digits
# separated by at most two of ' ().-' and whitespace (domestic phones, cards, My Number). \d and \s are the
# Unicode classes the finders use. tests/unit/test_detectors.py checks that no hit is ever missed.
_MAYBE = re.compile(r"@|eyJ|\+\d|\d\.\d{1,3}\.\d|:[0-9A-Fa-f]{0,4}:|\d(?:[\s().\-]{0,2}\d){8}")


def could_contain(text: str) -> bool:
    """Cheap pre-check, one C regex search: False means no finder can match (a product code, a page number)."""
    return _MAYBE.search(text) is not None
