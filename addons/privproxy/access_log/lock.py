"""[consent.linked_log] One advisory lock per log file, so `dsr erase` can rewrite it while the proxy appends (C12).

The lock lives in a sibling file (`.<name>.lock`) because erasing replaces the log file itself. The proxy
only ever tries the lock (it must never block its event loop) and keeps its buffer when the lock is taken.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(log: Path) -> Path:
    return log.with_name(f".{log.name}.lock")


class Locked(TimeoutError):
    """Another process held the lock for longer than the caller would wait."""


@contextmanager
def hold(log: Path, *, shared: bool = False, timeout: float = 30.0) -> Iterator[None]:
    """Block (polling, at most `timeout` seconds) until the lock is ours."""
    path = lock_path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        deadline = time.monotonic() + timeout
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Locked(f"{path} is held by another process") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class TryLock:
    """The writer's side: non-blocking, one descriptor kept open."""

    def __init__(self, log: Path) -> None:
        self.path = lock_path(log)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
