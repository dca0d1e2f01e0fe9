"""[logging] Daily and size-based rotation, and deletion after the retention period (C11; 004 disposal).

Rotated files are named `<stem>-YYYY-MM-DD[.N]<suffix>` by the UTC day their records belong to, so retention
can be decided from the name alone (compressed later or not), whatever touched the file's mtime since.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
DAY = 86400


@dataclass(frozen=True, slots=True)
class Rotation:
    daily: bool = True
    max_bytes: int | None = None  # rotate when the live file would grow past this
    retention_days: int | None = 30  # rotated files older than this are deleted; None keeps them forever


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _split(path: Path) -> tuple[str, str]:
    name = path.name
    stem, dot, suffix = name.partition(".")
    return stem, dot + suffix


def rotated_name(path: Path, day: str) -> Path:
    """The first free `<stem>-<day>[.N]<suffix>` next to `path`."""
    stem, suffix = _split(path)
    candidate = path.with_name(f"{stem}-{day}{suffix}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{stem}-{day}.{n}{suffix}")
        n += 1
    return candidate


def rotate(path: Path, day: str) -> Path | None:
    """Move the live file aside (the writer reopens a new one). None when there was nothing to move."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    target = rotated_name(path, day)
    os.rename(path, target)
    return target


def expired(path: Path, retention_days: int, now: float) -> list[Path]:
    """Rotated siblings of `path` whose day is older than the retention period."""
    stem, suffix = _split(path)
    # compressed afterwards (a cron job, `gzip linked-*.jsonl`): still the day's file, still expires
    pattern = re.compile(rf"^{re.escape(stem)}-(\d{{4}}-\d{{2}}-\d{{2}})(?:\.\d+)?{re.escape(suffix)}"
                         rf"(?:\.(?:gz|bz2|xz|zst))?$")
    cutoff = day_of(now - retention_days * DAY)
    out = []
    for p in path.parent.glob(f"{stem}-*"):
        m = pattern.match(p.name)
        if m and m.group(1) < cutoff:
            out.append(p)
    return sorted(out)


def delete_expired(path: Path, retention_days: int | None, now: float) -> int:
    if retention_days is None or not path.parent.is_dir():
        return 0
    n = 0
    for p in expired(path, retention_days, now):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            logger.error("privproxy: cannot delete expired log %s (%s)", p.name, e.strerror)
    return n
