"""[consent] Consent signals the visitor's browser already sends: GPC, DNT, an IAB TCF v2.2 string (C5, C13).

Each reader answers "does this signal refuse measurement?"; an unreadable signal refuses (the proxy never
reads a signal as weaker than it may be).
"""

from __future__ import annotations

import base64
import binascii
import re

# IAB TCF v2.2, "Consent string and vendor list formats v2", core segment. Bit offsets from the start:
# Version 6 | Created 36 | LastUpdated 36 | CmpId 12 | CmpVersion 12 | ConsentScreen 6 | ConsentLanguage 12 |
# VendorListVersion 12 | TcfPolicyVersion 6 | IsServiceSpecific 1 | UseNonStandardTexts 1 |
# SpecialFeatureOptIns 12 | PurposesConsent 24 (bit 152 + purpose - 1) | ...
TCF_PURPOSES_OFFSET = 152
TCF_MIN_BITS = TCF_PURPOSES_OFFSET + 24
# 1 store/access information on a device, 7 measure advertising performance, 8 measure content performance,
# 9 understand audiences through statistics: what analytics needs (issue 5; policy 001 §7.3).
TCF_PURPOSES = (1, 7, 8, 9)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def tcf_refuses(tc_string: str, purposes: tuple[int, ...] = TCF_PURPOSES) -> bool:
    """True unless the TC string's core segment is version 2 and consents to every one of `purposes`."""
    core = tc_string.strip().split(".", 1)[0]
    if not core or len(core) > 4096 or not _B64URL.fullmatch(core):
        return True
    try:
        raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    except (ValueError, binascii.Error):
        return True
    if len(raw) * 8 < TCF_MIN_BITS:
        return True
    bits = int.from_bytes(raw, "big")
    total = len(raw) * 8

    def bit(i: int) -> int:
        return (bits >> (total - 1 - i)) & 1

    version = bits >> (total - 6)
    if version != 2:
        return True
    return not all(bit(TCF_PURPOSES_OFFSET + p - 1) for p in purposes)


def flag_set(values: list[str]) -> bool:
    """`Sec-GPC: 1` / `DNT: 1` (the only value either header defines as an opt-out)."""
    return any(v.strip() == "1" for v in values)
