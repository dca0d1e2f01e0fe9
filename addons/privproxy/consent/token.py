"""[consent] Member-linkage consent tokens: mint and verify (C5, C12, C13). Spec: docs/consent-token.md.

    v1.<kid>.<payload>.<sig>
    payload = base64url(JSON {"sub": member id, "scp": [scopes], "iat": seconds, "exp": seconds}), no padding
    sig     = base64url(HMAC-SHA256(key[kid], "v1.<kid>.<payload>")), no padding

Only characters a cookie value may hold without quoting (RFC 6265 cookie-octet), so any member system can
set it as is. Every failure has its own state so forgeries and expiries can be counted apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

import orjson

VERSION = "v1"
SCOPES = ("analytics", "logs")  # analytics: beacons and tracking cookies as sent; logs: the linked log
MAX_TOKEN = 1024
LEEWAY = 60  # seconds a token's iat may lie in the future (clock skew between the member system and the proxy)
MEMBER_ID = re.compile(r"[A-Za-z0-9._:@+-]{1,128}")
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

# Why a token was not accepted. `forged` covers a tampered payload and a token signed with another key under
# a known key id: the two cannot be told apart, and both mean someone other than the member system made it.
STATES = ("valid", "malformed", "unknown_key", "forged", "expired", "not_yet_valid")


@dataclass(frozen=True, slots=True)
class Token:
    member: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int
    key_id: str


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str  # one of STATES
    token: Token | None = None  # set when the signature was good (even if expired), for `consent verify`
    detail: str = ""  # for humans; never contains the token or the member id

    @property
    def valid(self) -> bool:
        return self.state == "valid"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, signed: str) -> str:
    return _b64e(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest())


def mint(member: str, scopes: tuple[str, ...] | frozenset[str], issued_at: int, ttl: int, key_id: str,
         key: bytes) -> str:
    """A signed token. Raises ValueError for a member id, scope, key id or ttl the spec does not allow."""
    if not MEMBER_ID.fullmatch(member):
        raise ValueError("member ids are 1-128 characters from A-Z a-z 0-9 . _ : @ + -")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes are one or more of: {', '.join(SCOPES)}")
    if not KEY_ID.fullmatch(key_id):
        raise ValueError("key ids are 1-16 characters from A-Z a-z 0-9 _ -")
    if ttl <= 0:
        raise ValueError("the lifetime must be positive")
    payload = orjson.dumps({"sub": member, "scp": sorted(set(scopes)), "iat": int(issued_at),
                            "exp": int(issued_at) + int(ttl)})
    signed = f"{VERSION}.{key_id}.{_b64e(payload)}"
    return f"{signed}.{_sign(key, signed)}"


def verify(text: str, keys: dict[str, bytes], now: float, max_ttl: int | None = None) -> Verdict:
    """Check a token against the accepted keys (key id -> key). Never raises."""
    if not text or len(text) > MAX_TOKEN:
        return Verdict("malformed", detail="empty or longer than 1024 characters")
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        return Verdict("malformed", detail=f"not a {VERSION} token (v1.<key id>.<payload>.<signature>)")
    _, kid, payload_b64, sig = parts
    if not KEY_ID.fullmatch(kid):
        return Verdict("malformed", detail="invalid key id")
    if not _B64URL.fullmatch(payload_b64) or not _B64URL.fullmatch(sig):
        return Verdict("malformed", detail="payload and signature must be base64url")
    key = keys.get(kid)
    if key is None:
        return Verdict("unknown_key", detail=f"key id {kid!r} is not among the accepted keys")
    expected = _sign(key, f"{VERSION}.{kid}.{payload_b64}")
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii")):
        return Verdict("forged", detail=f"the signature does not match key {kid!r} (tampered or another key)")
    # From here the bytes came from whoever holds the key; still check the shape rather than trust it.
    try:
        data = orjson.loads(_b64d(payload_b64))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return Verdict("malformed", detail="the payload is not base64url JSON")
    token = _token(data, kid)
    if token is None:
        return Verdict("malformed", detail="the payload lacks a valid sub, scp, iat or exp")
    if token.expires_at <= now:
        return Verdict("expired", token, detail="the token has expired")
    if token.issued_at > now + LEEWAY:
        return Verdict("not_yet_valid", token, detail="issued in the future (check the clocks)")
    if max_ttl is not None and token.expires_at - token.issued_at > max_ttl:
        return Verdict("malformed", token, detail="its lifetime is longer than consent.max_ttl_days allows")
    return Verdict("valid", token)


def _token(data: object, kid: str) -> Token | None:
    if not isinstance(data, dict):
        return None
    sub, scp, iat, exp = data.get("sub"), data.get("scp"), data.get("iat"), data.get("exp")
    if not isinstance(sub, str) or not MEMBER_ID.fullmatch(sub):
        return None
    if not isinstance(scp, list) or not all(isinstance(s, str) for s in scp):
        return None
    if type(iat) is not int or type(exp) is not int or exp <= iat:
        return None
    # Scopes this version does not know are ignored, so a newer member system cannot widen what is allowed.
    return Token(sub, frozenset(s for s in scp if s in SCOPES), iat, exp, kid)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'1s', '15m', '12h', '30d', '2w' or plain seconds -> seconds. Raises ValueError."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw]?)\s*", text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 1s, 15m, 12h, 30d or 2w")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]
