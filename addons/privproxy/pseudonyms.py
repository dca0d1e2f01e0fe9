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
    pairs = (length + 1) // 2  # characters are taken two at a time: 10 bits each
    nbytes = (pairs * 10 + 7) // 8
    if nbytes > len(data):  # base32 pads the last group; leave that case to the library
        return base64.b32encode(data).decode()[:length].lower()
    n = int.from_bytes(data[:nbytes], "big") >> (nbytes * 8 - pairs * 10)
    return "".join([_B32_PAIRS[(n >> (10 * (pairs - 1 - i))) & 1023] for i in range(pairs)])[:length]


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

    def period(self) -> str:
        return period_id(self.clock(), self.settings.rotation)

    def key(self) -> bytes:
        period = period_id(self.clock(), self.settings.rotation)
        if period != self._period:
            self._key = hmac.new(self._secret, f"privproxy/pseudonym/v1/{period}".encode(), hashlib.sha256).digest()
            self._period = period  # the previous key is dropped here: nothing can recompute its pseudonyms
        return self._key

    def pseudonym(self, value: str, field: str = "") -> str:
        # The field name is mixed in so that the same value under two names gives two pseudonyms.
        mac = hmac.digest(self.key(), f"{field}\x00{value}".encode(), "sha256")  # one-shot C HMAC
        return self.settings.prefix + b32_prefix(mac, self.settings.length)
