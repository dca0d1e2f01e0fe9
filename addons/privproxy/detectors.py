"""[detectors] Find personal data in any value, whatever its field is called (C8).

Each finder returns the spans it is sure about: a pattern proposes, a check (Luhn, My Number check digit,
ipaddress) confirms, so order numbers, prices, dates and version strings survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import mul
from typing import TYPE_CHECKING

from privproxy import truncate
from privproxy.schema_types import arr, obj, string, table

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

type Finder = Callable[[str], Iterator[tuple[int, int]]]

_LOCAL = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"{_LOCAL}+@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}")
_EMAIL_AT_RUN_START = re.compile(f"(?<!{_LOCAL}){EMAIL.pattern}")
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.!#$%&'*+/=?^_`{|}~-")
# International: +CC then 6-14 more digits, optionally grouped. Japanese domestic: 0 + area/mobile prefix,
# hyphenated (03-1234-5678, 090-1234-5678) or the bare 11-digit mobile/IP-phone form (0[5789]0xxxxxxxx).
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){1,4}"
    r"|0\d{1,4}-\d{1,4}-\d{3,4}|\(0\d{1,4}\)\s?\d{1,4}-\d{3,4}|0[5789]0\d{8})(?![\w])"
)
# PHONE, CARD and MYNUMBER repeat only a bounded number of times, so each start position costs at most a
# constant and stays linear. EMAIL and JWT do not (run with finditer they are quadratic in a long run of
# their characters): find_email and find_jwt give the same spans in linear time.
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")  # the candidates find_card tries, as one regex
_DIGIT_CHAIN = re.compile(r"\d+(?:[ -]\d+)*")  # CARD's candidates lie in these: digits, single separators
_ANY_DIGIT, _SPACE = re.compile(r"\d"), re.compile(" ")
_ASCII_DIGIT_TO_N = str.maketrans("0123456789", "n" * 10)
MYNUMBER = re.compile(r"(?<!\d)\d{4}[ -]?\d{4}[ -]?\d{4}(?!\d)")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6[0245]|62")  # issuer ranges (IIN), at match()


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


# Q(n) of the ordinance for the digits left to right (P(11) first): n + 1 for n <= 6, n - 5 above.
_MYNUMBER_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def mynumber_ok(digits: str) -> bool:
    """Japanese Individual Number check digit (Ordinance of the Ministry of Internal Affairs, Art. 5)."""
    if len(digits) != 12 or not digits.isdigit():
        return False
    r = sum(map(mul, map(int, digits[:11]), _MYNUMBER_WEIGHTS)) % 11
    return int(digits[11]) == (0 if r <= 1 else 11 - r)


def find_email(text: str) -> Iterator[tuple[int, int]]:
    """The spans EMAIL.finditer gives, in linear time. EMAIL tried at every position rescans a long run of
    local-part characters from each of them (64 KB before an '@' stalled the proxy 6.5 s). An email found by
    finditer starts where its run of local-part characters starts, or, when that run began inside the
    previous match, at that match's end: only those two places are tried, so each run is read once. The
    domain needs no length bound: its characters are local-part characters, so no start falls inside it."""
    if "@" not in text:
        return
    pos, n = 0, len(text)
    while True:
        m = None
        if 0 < pos < n and text[pos - 1] in _LOCAL_CHARS and text[pos] in _LOCAL_CHARS:
            m = EMAIL.match(text, pos)
        if m is None:
            m = _EMAIL_AT_RUN_START.search(text, pos)
            if m is None:
                return
        yield m.span()
        pos = m.end()


def find_phone(text: str) -> Iterator[tuple[int, int]]:
    for m in PHONE.finditer(text):
        digits = sum(c.isdigit() for c in m.group(0))
        if 9 <= digits <= 15:
            yield m.span()


def find_ip(text: str) -> Iterator[tuple[int, int]]:
    """Dotted IPv4 in any inet_aton spelling and IPv6 (also with an IPv4 tail); not bare integers, which
    are counts and timestamps far more often than addresses. truncate.truncate_text() masks each span."""
    for start, end, _ in truncate.find_ips(text):
        yield start, end


def find_card(text: str) -> Iterator[tuple[int, int]]:
    """13-19 digits with single space or dash separators that pass the prefix and Luhn checks. CARD.finditer
    proposed one candidate per start, the longest, and moved past it when the check failed: a quantity
    before or after the number ("2 4111 1111 1111 1111", "4111 1111 1111 1111 2") hid the card. Here every
    start and end CARD allows is tried, longest first (at most 7 lengths a start: still linear)."""
    for chain in _DIGIT_CHAIN.finditer(text):
        if chain.end() - chain.start() >= 13:
            yield from _cards(text, chain.start(), chain.end())


def _cards(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    chain = text[start:end]
    digits = chain.replace(" ", "").replace("-", "")
    n = len(digits)
    # after[i]: what follows digit i in the chain: ' ', '-' or 'n' (the next digit, or the chain's end).
    shape = chain.translate(_ASCII_DIGIT_TO_N) if chain.isascii() else _ANY_DIGIT.sub("n", chain)
    after = shape.replace("n ", " ").replace("n-", "-")  # every separator follows exactly one digit
    # CARD's lookarounds: a card starts after anything but a digit or '-' and ends before the same.
    opens = [0] if start == 0 or text[start - 1] != "-" else []
    opens += [m.end() for m in _SPACE.finditer(after)]
    closes_at_end = end == len(text) or text[end] != "-"
    sums = _luhn_sums(digits)
    seps: list[int] | None = None
    taken = 0
    for k in opens:
        if n - k < 13:
            break
        if k < taken or not _CARD_PREFIX.match(digits, k):
            continue
        for j in range(min(k + 18, n - 1), k + 11, -1):
            closes = after[j] == " " if j < n - 1 else closes_at_end
            if closes and (sums[j % 2][j + 1] - sums[j % 2][k]) % 10 == 0:
                if seps is None:  # separators before each digit: where digit i is in the text
                    seps = [0, *accumulate(map(_IS_SEPARATOR.__getitem__, after))]
                yield start + k + seps[k], start + j + seps[j] + 1
                taken = j + 1
                break


_LUHN_SINGLE = bytes.maketrans(b"0123456789", bytes(range(10)))
_LUHN_DOUBLE = bytes.maketrans(b"0123456789", bytes(d * 2 - 9 if d > 4 else d * 2 for d in range(10)))
_IS_SEPARATOR = {" ": 1, "-": 1, "n": 0}


def _luhn_sums(digits: str) -> tuple[list[int], list[int]]:
    """Luhn sums of every candidate in O(1) each: sums[p][i] adds the digits before i, doubled (minus 9 above
    9, as luhn_ok) where their index parity differs from p, the parity of the candidate's last digit."""
    single: Sequence[int]
    double: Sequence[int]
    if digits.isascii():
        raw = digits.encode()
        single, double = raw.translate(_LUHN_SINGLE), raw.translate(_LUHN_DOUBLE)
    else:  # other Unicode digits (\d), valued as luhn_ok values them
        single = [ord(c) - 48 for c in digits]
        double = [d * 2 - 9 if d * 2 > 9 else d * 2 for d in single]
    even, odd = list(single), list(double)
    even[1::2], odd[1::2] = double[1::2], single[1::2]
    return [0, *accumulate(even)], [0, *accumulate(odd)]


def find_mynumber(text: str) -> Iterator[tuple[int, int]]:
    """MYNUMBER matches whose check digit holds; after one whose check fails the search resumes at its
    second group, so "9999 1234 5678 9018" still yields the number (each start is tried once: linear)."""
    pos = 0
    while (m := MYNUMBER.search(text, pos)) is not None:
        if mynumber_ok(m.group(0).replace(" ", "").replace("-", "")):
            yield m.span()
            pos = m.end()
        else:
            pos = m.start() + 1


def find_jwt(text: str) -> Iterator[tuple[int, int]]:
    """The spans JWT.finditer would give, in linear time: the regex retries every 'eyJ' of a long run of
    base64url characters and rescans the run each time. A segment always runs to the end of its base64url
    run, so one 'eyJ' per run decides for every later one in it."""
    pos = 0
    while (i := text.find("eyJ", pos)) >= 0:
        end1 = _B64URL.match(text, i + 3).end()
        if end1 - i >= 7 and text.startswith(".eyJ", end1):
            end2 = _B64URL.match(text, end1 + 4).end()
            if end2 - end1 >= 8 and text.startswith(".", end2):
                pos = _B64URL.match(text, end2 + 1).end()
                yield i, pos
                continue
        pos = end1


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
    """Non-overlapping hits, earliest first; on overlap the detector listed first wins.

    Each finder yields its spans in order and without overlap, so they are merged into the sorted hits of
    the detectors before it in one pass: comparing every hit with every other was quadratic in their number
    (a megabyte of "1.1.1.1 " holds 125,000 of them)."""
    hits: list[Hit] = []
    for name in enabled:
        merged: list[Hit] = []
        i = 0
        for start, end in FINDERS[name](text):
            while i < len(hits) and hits[i].end <= start:
                merged.append(hits[i])
                i += 1
            if i < len(hits) and hits[i].start < end:
                continue  # overlaps a hit of a detector listed earlier
            merged.append(Hit(name, start, end))
        merged += hits[i:]
        hits = merged
    return hits


# What every finder's pattern needs at the least: '@' (email), 'eyJ' (JWT), '+' and a digit (international
# phone), two dots around an inet_aton part (IPv4: each part starts with a digit and ends with a digit, a hex
# digit or the x of 0x), two colons around at most four hex digits (IPv6), or nine digits separated by at
# most two of ' ().-' and whitespace (domestic phones, cards, My Number). \d and \s are the Unicode classes
# the finders use. tests/unit/test_detectors.py checks that no hit is ever missed. Every branch is bounded or
# starts right after a '.', so the search is linear.
_MAYBE = re.compile(r"@|eyJ|\+\d|[0-9A-Fa-fxX]\.[0-9][0-9A-Fa-fxX]*\.[0-9]|:[0-9A-Fa-f]{0,4}:"
                    r"|\d(?:[\s().\-]{0,2}\d){8}")


_DIGITS = b"0123456789"


def could_contain(text: str) -> bool:
    """Cheap pre-check: False means no finder can match (a product code, a page number). _MAYBE decides.

    Why not _MAYBE alone: its first characters are classes, so sre has no first-character set to skip by and
    tries all six branches at every position, about 2 us for a 20-character path, more than the rest of the
    scrubbing of a plain path (filter-log meets a new path on most lines). ASCII text without anything every
    branch needs at the least ('@', 'eyJ', '+', two dots, two colons, or nine digits: \\d is [0-9] in ASCII) is
    answered by C string methods instead, with the same answer (tests/unit/test_offline.py compares them)."""
    if text.isascii() and "@" not in text and "+" not in text and "eyJ" not in text and text.count(".") < 2 \
            and text.count(":") < 2:
        raw = text.encode()
        if len(raw) - len(raw.translate(None, _DIGITS)) < 9:
            return False
    return _MAYBE.search(text) is not None


# --- filters.yaml `detectors:` -----------------------------------------------------------------------------------
ACTIONS = ("redact", "hash", "drop", "truncate")


@dataclass(frozen=True, slots=True)
class Settings:
    """The `detectors:` section: the detectors in use, and what each does to what it finds."""

    enabled: tuple[str, ...] = tuple(FINDERS)
    actions: dict[str, str] = field(default_factory=lambda: {"ip": "truncate"})
    default_action: str = "redact"

    def action(self, name: str) -> str:
        return self.actions.get(name, self.default_action)


DEFAULT = Settings()
SCHEMA = obj("Personal data found in any value whatever its name (C8).", {
    "enabled": arr("Detectors in use.", string("A detector.", enum=tuple(FINDERS)), default=list(DEFAULT.enabled)),
    "actions": table("Action per detector.", string("Action.", enum=ACTIONS)),
})


def parse(node: Node | None) -> Settings:
    if node is None:
        return Settings()  # its own dicts: a policy never shares mutable state with another
    m = node.mapping(SCHEMA.props)
    enabled = DEFAULT.enabled
    if "enabled" in m:
        enabled = tuple(x.choice(tuple(FINDERS), "email") for x in m["enabled"].seq())
    actions = dict(DEFAULT.actions)
    if "actions" in m:
        for name, an in m["actions"].items():
            if name not in FINDERS:
                an.error(f"unknown detector `{name}`", f"detectors: {', '.join(FINDERS)}")
                continue
            actions[name] = an.choice(ACTIONS, DEFAULT.default_action)
    return Settings(enabled=enabled, actions=actions)
