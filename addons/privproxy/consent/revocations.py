"""[consent.revocation_file] Members who withdrew consent: their tokens stop counting at once (C5, C12).

One member per line, optionally followed by a time (unix seconds or ISO 8601): tokens issued at or before it
are refused, so a member who consents again later gets a new, working token. Without a time every token of
the member is refused. `#` starts a comment. The file is re-read when it changes (checked at most once a
second); while it cannot be read every token is refused (fail closed), since a withdrawal may be in it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from privproxy.consent.token import MEMBER_ID

logger = logging.getLogger(__name__)
ALWAYS = 2**62  # a revocation without a time: every token ever issued


def parse(text: str) -> dict[str, int]:
    """member -> tokens issued at or before this second are revoked. A time that cannot be read revokes all."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        member, _, when = line.partition(" ")
        if not MEMBER_ID.fullmatch(member):
            continue  # cannot match any token's member id
        cutoff = _when(when.strip())
        out[member] = max(out.get(member, 0), cutoff)
    return out


def _when(text: str) -> int:
    if not text:
        return ALWAYS
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ALWAYS
    return int(dt.timestamp())


class Revocations:
    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._checked = -1e18
        self._stamp: tuple[int, int, int] | None = None
        self._cutoffs: dict[str, int] | None = {}
        self._reported = False

    def revoked(self, member: str, issued_at: int) -> bool:
        cutoffs = self._current()
        if cutoffs is None:
            return True
        cutoff = cutoffs.get(member)
        return cutoff is not None and issued_at <= cutoff

    def readable(self) -> bool:
        return self._current() is not None

    def _current(self) -> dict[str, int] | None:
        now = self.clock()
        if now - self._checked < 1.0:
            return self._cutoffs
        with self._lock:
            self._checked = now
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    self._cutoffs = parse(self.path.read_text(encoding="utf-8"))
                    self._stamp = stamp
                    self._reported = False
            except FileNotFoundError:
                self._cutoffs, self._stamp = {}, None  # nobody has withdrawn yet
            except (OSError, UnicodeDecodeError) as e:
                self._cutoffs, self._stamp = None, None
                if not self._reported:
                    self._reported = True
                    logger.error("privproxy: cannot read the consent revocation file %s (%s); every consent token "
                                 "is refused until it can be read", self.path, getattr(e, "strerror", None) or e)
        return self._cutoffs


def append(path: str | Path, member: str, now: float) -> None:
    """Add a revocation line (used by `privproxy consent revoke`); one write, so the proxy never reads half."""
    if not MEMBER_ID.fullmatch(member):
        raise ValueError("member ids are 1-128 characters from A-Z a-z 0-9 . _ : @ + -")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, f"{member} {int(now)}\n".encode())
    finally:
        os.close(fd)
