"""[beacons.forward] Consent per vendor: whether a visitor's own signals refuse the purposes one vendor is used for
(C5, C13). Only ever stricter: a refusal keeps the beacon from that vendor altogether; no signal makes a beacon
less scrubbed (member consent stays privproxy.consent.decision's).

- `Sec-GPC: 1` opts out of sale and sharing (CCPA/CPRA, and the GPC spec): vendors used for `advertising` get
  nothing.
- An IAB TCF v2.2 string (consent.tcf_cookie), for a vendor with a `gvl_id`: its vendor consent bit, and the TCF
  purposes of each purpose it is used for; an unreadable string refuses.
- Google Consent Mode on the beacon (`gcs`, `gcd`): analytics_storage denied refuses `analytics` vendors;
  ad_storage, ad_user_data or ad_personalization denied refuses `advertising` vendors. Google's own tags would
  still send a cookieless ping; privproxy sends nothing, which is stricter.
- An IAB GPP string on the beacon (`gpp`, with `gpp_sid` naming the sections that apply): an opt-out of sale,
  sharing or targeted advertising in the US national section or a state section refuses `advertising` vendors;
  an unreadable string refuses them too.
"""

from __future__ import annotations

import re

from privproxy.consent import signals

# The TCF purposes each use needs: analytics 1 (store/access on a device), 8 (measure content performance),
# 9 (understand audiences); advertising 1, 2-4 (basic, profile-based and personalised ads), 7 (measure ads).
TCF_PURPOSES = {"analytics": (1, 8, 9), "advertising": (1, 2, 3, 4, 7)}
GPC_JSON_PATH = "/.well-known/gpc.json"
REFUSALS = ("gpc", "tcf", "gpp", "consent_mode")  # privproxy_vendor_opt_outs_total{signal}

# TCF v2.2 core segment: the vendor consent section starts after PublisherCC (bit 213): MaxVendorId 16,
# IsRangeEncoding 1, then a bit per vendor, or NumEntries 12 and entries (IsARange 1, Start 16 [, End 16]).
_VENDORS_AT = 213
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


_B64_DIGITS = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


class _Bits:
    """The bits of a base64url segment, six a character: TCF and GPP fields need not end on a byte, and decoding to
    bytes first would drop a last partial byte."""

    def __init__(self, segment: str) -> None:
        if not segment or len(segment) > 8192 or not _B64URL.fullmatch(segment):
            raise ValueError("not base64url")
        self.n = 6 * len(segment)
        value = 0
        for ch in segment:
            value = (value << 6) | _B64_DIGITS[ch]
        self.value = value

    def read(self, at: int, width: int) -> int:
        if at + width > self.n:
            raise ValueError("segment too short")
        return (self.value >> (self.n - at - width)) & ((1 << width) - 1)


def tcf_vendor_consents(tc_string: str, vendor_id: int) -> bool:
    """True when the TC string's core segment (version 2) gives `vendor_id` consent; False when it does not or
    cannot be read."""
    try:
        bits = _Bits(tc_string.strip().split(".", 1)[0])
        if bits.read(0, 6) != 2:
            return False
        max_id = bits.read(_VENDORS_AT, 16)
        if not 1 <= vendor_id <= max_id:
            return False
        if not bits.read(_VENDORS_AT + 16, 1):  # a bit field
            return bits.read(_VENDORS_AT + 17 + vendor_id - 1, 1) == 1
        at = _VENDORS_AT + 17
        entries = bits.read(at, 12)
        at += 12
        for _ in range(entries):
            is_range = bits.read(at, 1)
            start = bits.read(at + 1, 16)
            end = bits.read(at + 17, 16) if is_range else start
            at += 33 if is_range else 17
            if start <= vendor_id <= end:
                return True
        return False
    except ValueError:
        return False


# --- IAB GPP (Global Privacy Platform) ------------------------------------------------------------------------------
# The US sections and where their opt-outs sit (bit offsets in the section's core segment, after Version 6): each
# field is 2 bits, 1 = opted out, 2 = did not opt out, 0 = not applicable. IAB GPP specification, "US National
# Privacy Technical Specification" and the state sections.
GPP_US_OPT_OUTS: dict[int, tuple[int, ...]] = {
    7: (18, 20, 22),  # usnat: SaleOptOut, SharingOptOut, TargetedAdvertisingOptOut
    8: (12, 14),  # usca: SaleOptOut, SharingOptOut
    9: (12, 14),  # usva: SaleOptOut, TargetedAdvertisingOptOut
    10: (12, 14),  # usco: SaleOptOut, TargetedAdvertisingOptOut
    11: (14, 16),  # usut: SaleOptOut, TargetedAdvertisingOptOut (after a SensitiveDataProcessingOptOutNotice)
    12: (12, 14),  # usct: SaleOptOut, TargetedAdvertisingOptOut
}


class _Reader:
    def __init__(self, segment: str) -> None:
        self.bits = _Bits(segment)
        self.at = 0

    def int(self, width: int) -> int:
        v = self.bits.read(self.at, width)
        self.at += width
        return v

    def fibonacci(self) -> int:
        """A Fibonacci-coded integer (Zeckendorf bits for 1, 2, 3, 5, 8, ... ended by a second 1 in a row)."""
        a, b, value, last = 1, 2, 0, 0
        for _ in range(64):
            bit = self.int(1)
            if bit and last:
                return value
            value += a if bit else 0
            last = bit
            a, b = b, a + b
        raise ValueError("Fibonacci integer too long")


_MAX_SECTIONS = 64  # GPP defines a few dozen sections


def gpp_sections(gpp: str) -> dict[int, str]:
    """Section id -> its core segment, from a GPP string's header (type 3, ids as a Fibonacci range); raises
    ValueError when it cannot be read."""
    parts = gpp.strip().split("~")
    r = _Reader(parts[0])
    if r.int(6) != 3:
        raise ValueError("not a GPP header")
    r.int(6)  # version
    ids: list[int] = []
    last = 0
    for _ in range(r.int(12)):
        if r.int(1):
            start = last + r.fibonacci()
            last = start + r.fibonacci()
            if last - start + 1 + len(ids) > _MAX_SECTIONS:  # checked before the range is made: a short string
                raise ValueError("too many sections")  # can name a range of billions
            ids += range(start, last + 1)
        else:
            last += r.fibonacci()
            ids.append(last)
        if len(ids) > _MAX_SECTIONS:
            raise ValueError("too many sections")
    if len(ids) != len(parts) - 1:
        raise ValueError("sections and header disagree")
    return {sid: part.split(".", 1)[0] for sid, part in zip(ids, parts[1:], strict=True)}


def gpp_opts_out(gpp: str, sids: str = "") -> bool:
    """True when a US section that applies (`gpp_sid`, else every one present) records an opt-out of sale, sharing
    or targeted advertising, or when the string cannot be read."""
    try:
        sections = gpp_sections(gpp)
        applies = {int(x) for x in sids.replace(" ", "").split(",") if x} if sids.strip() else set(sections)
        for sid, segment in sections.items():
            if sid in applies and sid in GPP_US_OPT_OUTS:
                r = _Reader(segment)
                if any(r.bits.read(at, 2) == 1 for at in GPP_US_OPT_OUTS[sid]):
                    return True
        return False
    except ValueError:
        return True


# Consent Mode's gcd: one letter per signal (ad_storage, analytics_storage, ad_user_data, ad_personalization), each
# saying the default and the update; these end denied (denied by default, in both, by update, granted then denied).
_GCD_DENIED = frozenset("pqmu")
_GCS = re.compile(r"G1([01])([01])")


def consent_mode_denies(gcs: str, gcd: str) -> frozenset[str]:
    """The uses (`analytics`, `advertising`) a Consent Mode hit denies: gcs `G1<ad_storage><analytics_storage>`,
    gcd letter by letter (its digits separate the letters)."""
    denied: set[str] = set()
    m = _GCS.match(gcs)
    if m is not None:
        if m.group(1) == "0":
            denied.add("advertising")
        if m.group(2) == "0":
            denied.add("analytics")
    letters = [c for c in gcd.lower() if "a" <= c <= "z"]
    for i, letter in enumerate(letters[:4]):
        if letter in _GCD_DENIED:
            denied.add("analytics" if i == 1 else "advertising")
    return frozenset(denied)


def refusal(purposes: tuple[str, ...], gvl_id: int | None, gpc: list[str], tcf: list[str],
            honor_gpc: bool = True, gpp: tuple[str, str] | None = None,
            consent_mode: frozenset[str] = frozenset()) -> str | None:
    """Which of the visitor's signals refuses this vendor (a REFUSALS value), or None. `gpp`: the beacon's
    (gpp, gpp_sid) when it carries a GPP string; `consent_mode`: the uses its Consent Mode denies."""
    if honor_gpc and "advertising" in purposes and signals.flag_set(gpc):
        return "gpc"
    if consent_mode & set(purposes):
        return "consent_mode"
    if gpp is not None and "advertising" in purposes and gpp_opts_out(*gpp):
        return "gpp"
    if gvl_id is not None and tcf:
        needed = tuple(sorted({p for use in purposes for p in TCF_PURPOSES[use]}))
        for tc in tcf:
            if signals.tcf_refuses(tc, needed) or not tcf_vendor_consents(tc, gvl_id):
                return "tcf"
    return None


def gpc_json() -> bytes:
    """The site's `/.well-known/gpc.json` (GPC spec §3.5): privproxy honours the signal on its sites."""
    return b'{"gpc": true}\n'
