"""[detectors] Find personal data in any value, whatever its field is called (C8).

Each finder returns the spans it is sure about: a pattern proposes, a check (Luhn, My Number check digit,
ipaddress) confirms, so order numbers, prices, dates and version strings survive.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import accumulate
from operator import mul
from types import SimpleNamespace
from typing import TYPE_CHECKING

import phonenumbers
import re2

from privproxy import truncate
from privproxy.misses import Misses
from privproxy.schema_types import arr, obj, string, table

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

type Finder = Callable[[str], Iterator[tuple[int, int]]]

DEFAULT_REGIONS = ("JP", "US")  # national numbers read as these countries write them (as shipped: `phone_regions`)

_LOCAL = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"{_LOCAL}+@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}")
_EMAIL_AT_RUN_START = re.compile(f"(?<!{_LOCAL}){EMAIL.pattern}")
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.!#$%&'*+/=?^_`{|}~-")
# Phone numbers: PHONE proposes digit groups (any Unicode digits, fullwidth too) joined by one or two separators
# (spaces, dots, dashes, parentheses in ASCII and fullwidth, the ideographic space, the katakana long mark written
# for a dash), with an optional `+`; phonenumbers (libphonenumber's metadata) decides (find_phone).
_PHONE_SEP = r"[ \t.\-()\u3000\u2010-\u2015\u2212\u30fc\uff08\uff09\uff0d\uff0e]"
PHONE = re.compile(rf"(?<![\w+\uff0b])(?:[+\uff0b] ?)?[(\uff08]?\d{{1,15}}(?:{_PHONE_SEP}{{1,2}}\d{{1,15}}){{0,6}}")
_PHONE_GROUPS = re.compile(rf"{_PHONE_SEP}+")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# PHONE, CARD and MYNUMBER repeat only a bounded number of times, so each start position costs at most a
# constant and stays linear. EMAIL and JWT do not (run with finditer they are quadratic in a long run of
# their characters): find_email and find_jwt give the same spans in linear time.
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")  # the candidates find_card tries, as one regex
# CARD's candidates lie in these: digits, single separators. No lookahead that would pass over short chains in C:
# one scan of a large body without a match would hold the GIL for its whole length, and other requests wait on
# it (tests/e2e/test_stalls.py); a Python step per chain lets them in.
_DIGIT_CHAIN = re.compile(r"\d+(?:[ -]\d+)*")
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


def find_phone(text: str, regions: tuple[str, ...] = DEFAULT_REGIONS) -> Iterator[tuple[int, int]]:
    """Phone numbers of 9 to 15 digits that libphonenumber reads as one: international (`+81 90 1234 5678`,
    fullwidth, or with the `+` sent raw in a query, which arrives as a space), or national in one of `regions`
    (`090-1234-5678` in JP, `555-123-4567` in US). A valid number counts; a merely possible one only when it is
    grouped as its country writes numbers (`555-123-4567`: 555 is no area code, but that is a phone number),
    and a bare run of digits only when it is a valid mobile number (order numbers and timestamps are bare)."""
    for m in PHONE.finditer(text):
        cand = m.group(0).rstrip(" \t.-\u3000")
        start, end = m.start(), m.start() + len(cand)
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue  # `ISBN 978-4-06-519981-7x`, `12-34-56789abc`: part of a word
        groups = [g.span() for g in _DIGIT_RUN.finditer(cand)]
        ends = list(itertools.accumulate(b - a for a, b in groups))  # digits up to and including each group
        if ends[-1] < _MIN_DIGITS:
            continue  # too few digits for any phone number: decided without libphonenumber (hostile digit soup)
        if _is_phone(cand, regions):
            yield start, end
            continue
        # A number next to another (`room 5 090-1234-5678`, `090-1234-5678 2024`) makes one candidate that reads
        # as none: the runs of its groups are tried, longest first (at most 7 groups: a bounded number of tries).
        i = 0
        while i < len(groups):
            for j in range(len(groups) - 1, i - 1, -1):
                if ends[j] - (ends[i - 1] if i else 0) < _MIN_DIGITS:
                    break  # shorter runs have fewer digits still
                a = 0 if i == 0 else groups[i][0]  # the first group keeps its `+` or `(`
                if _is_phone(cand[a:groups[j][1]].rstrip(")\uff09"), regions):
                    yield start + a, start + groups[j][1]
                    i = j
                    break
            i += 1


_DIGIT_RUN = re.compile(r"\d+")
_MIN_DIGITS = 9  # the fewest digits of a number find_phone reports (_digits_ok)


def _digits_ok(cand: str) -> bool:
    return _MIN_DIGITS <= sum(c.isdigit() for c in cand) <= 15 and _DOTTED_QUAD.fullmatch(cand) is None


@lru_cache(maxsize=4096)  # the same numbers recur (a shop's own number in every footer link); parsing costs ~60 us
def _is_phone(cand: str, regions: tuple[str, ...]) -> bool:
    if not _digits_ok(cand):
        return False
    bare = len([g for g in _PHONE_GROUPS.split(cand.lstrip("+\uff0b (\uff08")) if g]) == 1
    if cand[0] in "+\uff0b":
        return _reads_as_phone(cand, None, bare)
    if any(_reads_as_phone(cand, region, bare) for region in regions):
        return True
    # a `+` sent raw in a query string is a space once decoded: `81 90 1234 5678`
    return not bare and _reads_as_phone("+" + cand.lstrip(" ("), None, bare, possible=False)


def _reads_as_phone(cand: str, region: str | None, bare: bool, possible: bool = True) -> bool:
    try:
        n = phonenumbers.parse(cand, region)
    except phonenumbers.NumberParseException:
        return False
    if bare:  # a bare run of digits is an order number or a timestamp unless it is a mobile number (or has its +)
        return phonenumbers.is_valid_number(n) and (region is None or phonenumbers.number_type(n) == _MOBILE)
    # Grouped as the country writes its numbers, or coarser (`2024 01 15 10` is a valid Japanese and US number,
    # but neither country writes one so); a merely possible one too (`555-123-4567`: 555 is no area code).
    if not (phonenumbers.is_valid_number(n) or possible and phonenumbers.is_possible_number(n)):
        return False
    sizes = _group_sizes(cand)
    return any(_coarser(sizes, _group_sizes(phonenumbers.format_number(n, f))) for f in _FORMATS)


_MOBILE = phonenumbers.PhoneNumberType.MOBILE
_FORMATS = (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _group_sizes(text: str) -> list[int]:
    return [len(run) for run in _DIGIT_RUN.findall(text)]


def _coarser(sizes: list[int], written: list[int]) -> bool:
    """Whether `sizes` is `written` with some neighbouring groups joined: [2, 10] of [2, 2, 4, 4]."""
    i, acc = 0, 0
    for size in sizes:
        while acc < size and i < len(written):
            acc += written[i]
            i += 1
        if acc != size:
            return False
        acc = 0
    return i == len(written)


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


_DOT_IN_NUMBER = re.compile(r"(?<=\d)\.(?=\d)")


def find_card_any(text: str) -> Iterator[tuple[int, int]]:
    """find_card, and cards grouped with dots (`4111.1111.1111.1111`): a dot between digits is read as the space
    find_card splits groups at (one character for one: the spans stand)."""
    yield from find_card(_DOT_IN_NUMBER.sub(" ", text) if "." in text else text)


def find_mynumber_any(text: str) -> Iterator[tuple[int, int]]:
    """find_mynumber, and Individual Numbers grouped with dots (`1234.5678.9018`), as find_card_any reads them."""
    yield from find_mynumber(_DOT_IN_NUMBER.sub(" ", text) if "." in text else text)


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


# --- encoded emails ------------------------------------------------------------------------------------------
# An '@' spelled otherwise: fullwidth (＠, ﹫), an HTML entity, %-encoded twice or more (`%2540` decodes once to
# `%40`: the detectors see values decoded once). Each spelling is read as '@', fullwidth letters as ASCII, and
# the emails of that reading are found where they stand in the text.
_AT_SPELLINGS = re.compile(r"&#0*64;|&#[xX]0*40;|&commat;|%(?:25)*40|[\uff20\ufe6b]")
_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20, 0xFE6B: 0x40}
# Base64 of anything holding an '@' holds one of these pairs (the '@' at each of the three byte offsets of a
# 3-byte group: Q then A-P, [EUk0] then A-D, one of 16 then A), each ending in an upper-case letter A-P.
_B64_AT = re.compile(r"Q[A-P]|[EUk0][A-D]|[BFJNRVZdhlptx159]A")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def _email_reading(text: str) -> Iterator[tuple[int, int]]:
    """Emails with the '@' spelled otherwise, as spans of `text`."""
    chars: list[str] = []
    starts: list[int] = []
    pos = 0
    for m in _AT_SPELLINGS.finditer(text):
        chars.append(text[pos:m.start()].translate(_FULLWIDTH))
        starts.extend(range(pos, m.start()))
        chars.append("@")
        starts.append(m.start())
        pos = m.end()
    chars.append(text[pos:].translate(_FULLWIDTH))
    starts.extend(range(pos, len(text) + 1))
    read = "".join(chars)
    for s, e in find_email(read):
        yield starts[s], _end_of(text, starts, e)


def entity_emails(text: str) -> Iterator[tuple[int, int]]:
    """Emails whose '@' is spelled as an HTML entity, whose `&` and `#` a URL parser would split them at."""
    for start, end in _email_reading(text):
        if "&" in text[start:end]:
            yield start, end


def _end_of(text: str, starts: list[int], e: int) -> int:
    """Where the character before `e` of the reading ends in `text` (an entity spells one character in several)."""
    last = starts[e - 1]
    m = _AT_SPELLINGS.match(text, last)  # an email ends in a letter, never in its '@': this is for safety only
    return m.end() if m is not None else last + 1


def _email_base64(text: str) -> Iterator[tuple[int, int]]:
    """Runs of base64 (standard or URL-safe) that decode to text holding an email: the whole run is the hit."""
    for m in _B64_RUN.finditer(text):
        run = m.group(0)
        if _B64_AT.search(run) is None:
            continue
        body = run.rstrip("=")
        try:
            raw = base64.b64decode(body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if b"@" in raw and next(find_email(raw.decode("latin-1")), None) is not None:
            yield m.span()


def find_email_any(text: str) -> Iterator[tuple[int, int]]:
    """find_email, and emails spelled fullwidth, with an HTML-entity or multiply %-encoded '@', or in base64."""
    encoded = _AT_SPELLINGS.search(text) is not None
    b64 = _B64_AT.search(text) is not None
    if not encoded and not b64:
        yield from find_email(text)
        return
    spans = list(find_email(text))
    if encoded:
        spans += _email_reading(text)
    if b64:
        spans += _email_base64(text)
    yield from _disjoint(spans)


def _disjoint(spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Spans in order, without overlaps: the earliest start wins, the longer one on a tie."""
    end = -1
    for s, e in sorted(spans, key=lambda se: (se[0], -se[1])):
        if s >= end:
            yield s, e
            end = e


# --- standard numbers (python-stdnum) ----------------------------------------------------------------------
@lru_cache(maxsize=1)
def _stdnum() -> SimpleNamespace:
    """python-stdnum's validators, imported when a candidate first needs one: the package imports pydoc, zipfile
    and importlib.resources (18 ms), serial start-up for filter-log, whose logs mostly hold no candidate."""
    from stdnum import iban
    from stdnum.eu import vat
    from stdnum.jp import cn
    from stdnum.us import ssn

    return SimpleNamespace(iban=iban, vat=vat, jp_cn=cn, ssn=ssn)


# Each candidate pattern repeats a bounded number of times: linear. Every candidate holds nine digits with at most
# two separators between them, or matches _MAYBE's VAT branch, so could_contain() needs nothing new for them.
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_NINE_DIGITS = re.compile(r"\d(?:[\s().\-]{0,2}\d){8}")
SSN = re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])")  # written grouped: a bare 9 digits is anything
CORPORATE = re.compile(r"(?<![A-Za-z0-9])T?\d{13}(?!\d)|(?<![\d-])\d-?\d{4}-?\d{4}-?\d{4}(?![\d-])")
_VAT_PREFIXES = "AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI"
_VAT_BRANCH = rf"(?:{_VAT_PREFIXES})[ -]?[0-9A-Z]{{0,2}}\d{{6}}"  # in _MAYBE: what every VAT candidate starts with
VAT = re.compile(rf"(?<![A-Za-z0-9]){_VAT_BRANCH}[0-9A-Z]{{0,6}}(?![A-Za-z0-9])")
# Millisecond timestamps (2001-2039) are 13 digits starting with 1 or 2, as are a ninth of corporate numbers;
# a bare one counts only with the `T` of an invoice registration number or written grouped.
_EPOCH_MS = range(10**12, 22 * 10**11)


def find_iban(text: str) -> Iterator[tuple[int, int]]:
    """IBANs whose ISO 7064 check digits and country length and format hold (stdnum.iban; not the national
    check digits some countries add: an IBAN written wrong is still someone's account)."""
    for m in IBAN.finditer(text):
        cand = m.group(0)
        # the pattern also takes a word written after a grouped IBAN (`... 7654 32 y`): shorter at each space
        while len(cand) >= 15:
            if _NINE_DIGITS.search(cand) is not None and _stdnum().iban.is_valid(cand, check_country=False):
                yield m.start(), m.start() + len(cand)
                break
            if " " not in cand:
                break
            cand = cand.rpartition(" ")[0]


def find_ssn(text: str) -> Iterator[tuple[int, int]]:
    """US Social Security numbers written `AAA-GG-SSSS` or with spaces, in the ranges SSA issues (stdnum.us.ssn)."""
    for m in SSN.finditer(text):
        if _stdnum().ssn.is_valid(m.group(0).replace(" ", "-")):
            yield m.span()


def find_corporate_number(text: str) -> Iterator[tuple[int, int]]:
    """Japanese corporate numbers (法人番号, 13 digits, check digit first: stdnum.jp.cn), bare, `T`-prefixed
    (qualified invoice issuers) or grouped `1-2345-6789-0123`."""
    for m in CORPORATE.finditer(text):
        cand = m.group(0)
        digits = cand.lstrip("T").replace("-", "")
        if not digits.isascii() or not _stdnum().jp_cn.is_valid(digits):
            continue
        if cand.isdigit() and int(digits) in _EPOCH_MS:
            continue
        yield m.span()


def find_vat(text: str) -> Iterator[tuple[int, int]]:
    """EU VAT identification numbers with their country prefix and check digits (stdnum.eu.vat)."""
    for m in VAT.finditer(text):
        if _stdnum().vat.is_valid(m.group(0)):
            yield m.span()


# Precedence on overlap: the detector listed first wins (scan); numbers with a check digit before phone numbers,
# which only their shape and length tell, the IBAN (mod 97) before the numbers its groups can hold, and
# addresses before all of them.
FINDERS: dict[str, Finder] = {
    "email": find_email_any,
    "jwt": find_jwt,
    "ip": find_ip,
    "iban": find_iban,
    "card": find_card_any,
    "mynumber": find_mynumber_any,
    "corporate_number": find_corporate_number,
    "ssn": find_ssn,
    "vat": find_vat,
    "phone": find_phone,
}


CLEAN_TEXT = 256  # characters: longer texts are scanned each time (Settings.hits)


@dataclass(frozen=True, slots=True)
class Hit:
    detector: str
    start: int
    end: int


def scan(text: str, enabled: tuple[str, ...], finders: Mapping[str, Finder] = FINDERS) -> list[Hit]:
    """Non-overlapping hits, earliest first; on overlap the detector listed first wins.

    Each finder yields its spans in order and without overlap, so they are merged into the sorted hits of
    the detectors before it in one pass: comparing every hit with every other was quadratic in their number
    (a megabyte of "1.1.1.1 " holds 125,000 of them)."""
    hits: list[Hit] = []
    for name in enabled:
        merged: list[Hit] = []
        i = 0
        for start, end in finders[name](text):
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
# digit or the x of 0x), two colons around at most four hex digits (IPv6), nine digits separated by at most two
# of the phone separators (domestic phones, cards, My Number, SSN, IBAN, corporate numbers), a VAT id's country
# prefix and six digits, an '@' spelled otherwise (entity, %-encoded, fullwidth), or a pair of base64 characters
# that encodes an '@' (_B64_AT). \d and \s are the Unicode classes the finders use. tests/unit/test_detectors.py
# checks that no hit is ever missed. Every branch is bounded or starts right after a '.', so the search is linear.
_MAYBE = re.compile(r"@|eyJ|[+\uff0b] ?\d|[0-9A-Fa-fxX]\.[0-9][0-9A-Fa-fxX]*\.[0-9]|:[0-9A-Fa-f]{0,4}:"
                    r"|\d(?:[\s().\-\u2010-\u2015\u2212\u30fc\uff08\uff09\uff0d\uff0e]{0,2}\d){8}"
                    rf"|{_VAT_BRANCH}|&#0*64;|&#[xX]0*40;|&commat;|%(?:25)*40|[\uff20\ufe6b]|{_B64_AT.pattern}")


_DIGITS = b"0123456789"
_NEEDED = b"@+%&JABCDEFGHIJKLMNOP"  # a character one of _MAYBE's branches needs (besides dots, colons, digits)


def could_contain(text: str) -> bool:
    """Cheap pre-check: False means no finder can match (a product code, a page number). _MAYBE decides.

    Why not _MAYBE alone: its first characters are classes, so sre has no first-character set to skip by and
    tries every branch at every position, about 2 us for a 20-character path, more than the rest of the
    scrubbing of a plain path (filter-log meets a new path on most lines). ASCII text without anything every
    branch needs at the least (one of '@', '+', '%', '&', the J of 'eyJ' or an upper-case A to P, which both a
    VAT prefix and the base64 of an '@' hold; two dots, two colons or nine digits: \\d is [0-9] in ASCII) is
    answered by C string methods instead, with the same answer (tests/unit/test_log_filter.py compares them)."""
    if text.isascii() and text.count(".") < 2 and text.count(":") < 2:
        raw = text.encode()
        n = len(raw)
        if len(raw.translate(None, _NEEDED)) == n and n - len(raw.translate(None, _DIGITS)) < 9:
            return False
    return _MAYBE.search(text) is not None


# --- filters.yaml `detectors:` -----------------------------------------------------------------------------------
ACTIONS = ("redact", "hash", "drop", "truncate")
CUSTOM_ACTIONS = ("redact", "hash", "drop")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the load error says what is wrong; RE2's own message would go to stderr
_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(text: str) -> str:
    """`text` as RE2 can read it: a lone surrogate (a byte that was not UTF-8) as U+FFFD, one for one."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class Custom:
    """A detector of filters.yaml: a pattern RE2 runs in linear time (no backtracking, whatever the input)."""

    id: str
    pattern: str
    regex: re2._Regexp = field(compare=False, repr=False)
    action: str = "redact"
    why: str = ""

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(readable(text)):
            if m.end() > m.start():
                yield m.span()


@dataclass(frozen=True, slots=True)
class Settings:
    """The `detectors:` section: the detectors in use, what each does to what it finds, the countries whose
    national phone numbers are recognized, and the site's own detectors."""

    enabled: tuple[str, ...] = tuple(FINDERS)
    actions: dict[str, str] = field(default_factory=lambda: {"ip": "truncate"})
    default_action: str = "redact"
    phone_regions: tuple[str, ...] = DEFAULT_REGIONS
    custom: tuple[Custom, ...] = ()
    finders: Mapping[str, Finder] = field(default_factory=dict, compare=False, repr=False)  # set from the above
    order: tuple[str, ...] = field(default=tuple(FINDERS), compare=False)  # enabled, then the custom ones
    _any_custom: re2._Regexp | None = field(default=None, compare=False, repr=False)
    # could_contain(), and with custom detectors whether one may match (its pattern decides): set below
    could_contain: Callable[[str], bool] = field(default=could_contain, compare=False, repr=False)
    _clean: Misses = field(default_factory=lambda: Misses(CLEAN_TEXT), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        finders: dict[str, Finder] = dict(FINDERS)
        if self.phone_regions != DEFAULT_REGIONS:
            finders["phone"] = partial(find_phone, regions=self.phone_regions)
        for c in self.custom:
            finders[c.id] = c.find
        object.__setattr__(self, "finders", finders)
        object.__setattr__(self, "order", self.enabled + tuple(c.id for c in self.custom))
        if self.custom:
            joined = "|".join(f"(?:{c.pattern})" for c in self.custom)
            object.__setattr__(self, "_any_custom", re2.compile(joined, options=_RE2_OPTIONS))
            object.__setattr__(self, "could_contain", self._could_contain_or_custom)

    def action(self, name: str) -> str:
        for c in self.custom:
            if c.id == name:
                return c.action
        return self.actions.get(name, self.default_action)

    def _could_contain_or_custom(self, text: str) -> bool:
        return could_contain(text) or (self._any_custom is not None
                                       and self._any_custom.search(readable(text)) is not None)

    def scan(self, text: str) -> list[Hit]:
        return scan(text, self.order, self.finders)

    def hits(self, text: str) -> list[Hit]:
        """scan(text) when could_contain(text) says a detector may match, else none. Texts without a hit are
        remembered (privproxy.misses): field names, event names, version strings and the ids of the site's own
        tags come back in beacon after beacon, and those with digits went through the card, phone and IBAN
        finders each time (the detectors were 5 % of a beacon's instructions)."""
        clean = self._clean
        if text in clean:
            return []
        found = self.scan(text) if self.could_contain(text) else []
        if not found:
            clean.add(text)
        return found


DEFAULT = Settings()
CUSTOM = obj("A detector of your own: values matching `pattern` anywhere get `action`.", {
    "id": string("Short name, lower case (`detector:<id>` in metrics and explain).", pattern=_ID.pattern),
    "pattern": string("An RE2 regular expression (linear time: no backreferences or lookarounds)."),
    "action": string("What happens to what it finds.", enum=CUSTOM_ACTIONS, default="redact"),
    "why": string("The policy clause it implements (shown by explain and the disclosure report)."),
}, required=("id", "pattern"))
SCHEMA = obj("Personal data found in any value whatever its name (C8).", {
    "enabled": arr("Detectors in use; on overlap the one listed first wins.",
                   string("A detector.", enum=tuple(FINDERS)), default=list(DEFAULT.enabled)),
    "actions": table("Action per detector.", string("Action.", enum=ACTIONS)),
    "phone_regions": arr("Countries whose national phone numbers (without +country code) are recognized, "
                         "ISO 3166-1 alpha-2; numbers with a `+` are recognized for every country.",
                         string("A country code.", pattern=r"^[A-Z]{2}$"), default=list(DEFAULT_REGIONS)),
    "custom": arr("Detectors of your own.", CUSTOM),
})


def parse(node: Node | None, rule_regions: frozenset[str] = frozenset()) -> Settings:
    """The `detectors:` section. `rule_regions`: the countries the rules name (`regions:`), whose national phone
    numbers are recognized too."""
    if node is None:
        return Settings(phone_regions=_with(DEFAULT_REGIONS, rule_regions))  # its own dicts: never shared
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
    regions = DEFAULT_REGIONS
    if "phone_regions" in m:
        regions = tuple(dict.fromkeys(_region(x) for x in m["phone_regions"].seq()))
    regions = _with(regions, rule_regions)
    custom = tuple(_custom(x, enabled) for x in m["custom"].seq()) if "custom" in m else ()
    ids = [c.id for c in custom]
    for c, x in zip(custom, m["custom"].seq() if "custom" in m else [], strict=False):
        if ids.count(c.id) > 1:
            x.error(f"duplicate detector id `{c.id}`", "give each custom detector its own id")
    return Settings(enabled=enabled, actions=actions, phone_regions=regions,
                    custom=tuple(c for c in custom if c.pattern))


def _with(regions: tuple[str, ...], rule_regions: frozenset[str]) -> tuple[str, ...]:
    """The phone regions and, after them, the countries the rules name (those phonenumbers knows)."""
    return regions + tuple(sorted(r for r in rule_regions if r not in regions and r in phonenumbers.SUPPORTED_REGIONS))


def _region(n: Node) -> str:
    code = n.string()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        n.error(f"`{code}` is not a country phonenumbers knows", "use ISO 3166-1 alpha-2 codes: JP, US, GB, DE")
    return code


def _custom(n: Node, enabled: tuple[str, ...]) -> Custom:
    m = n.mapping(CUSTOM.props)
    cid = m["id"].string() if "id" in m else ""
    if not _ID.match(cid):
        (m["id"] if "id" in m else n).error(f"a custom detector needs an `id` of lower-case letters, digits and _ "
                                            f"(got `{cid}`)", "e.g. id: member_number")
    elif cid in FINDERS:
        m["id"].error(f"`{cid}` is a built-in detector", "give your detector another id")
    pattern = m["pattern"].string() if "pattern" in m else ""
    regex = None
    if not pattern:
        n.error("a custom detector needs a `pattern`", r"e.g. pattern: 'M-\d{8}'")
    else:
        try:
            regex = re2.compile(pattern, options=_RE2_OPTIONS)
        except re2.error as e:
            msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            m["pattern"].error(f"the pattern is not a linear-time (RE2) regular expression: {msg}",
                               "remove backreferences (\\1) and lookarounds ((?=...), (?<!...)); RE2 never "
                               "backtracks, so nested quantifiers are safe")
        else:
            if regex.search("") is not None:
                m["pattern"].error("the pattern matches the empty text", "make it match at least one character")
                regex = None
    action = m["action"].choice(CUSTOM_ACTIONS, "redact") if "action" in m else "redact"
    why = m["why"].string() if "why" in m else ""
    if regex is None:
        return Custom(cid, "", re2.compile("x", options=_RE2_OPTIONS), action, why)
    return Custom(cid, pattern, regex, action, why)
