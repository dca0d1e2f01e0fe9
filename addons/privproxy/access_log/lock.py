"""[consent.linked_log] One advisory lock per log file, so `dsr erase` can rewrite it while the proxy appends (C12).

The lock lives in a sibling file (`.<name>.lock`) because erasing replaces the log file itself. The proxy
only ever tries the lock (it must never block its event loop) and keeps its buffer when the lock is taken.
A pending chunk (records the proxy set aside while the lock was taken) carries a lock of its own while it is
being written, so `dsr` never reads half of one.
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


def _open(path: Path) -> int:
    """Anyone who can read the lock file can take it: `dsr` run as root must not lock the proxy's user out
    (0644; flock needs no write access, except over NFS, hence O_RDWR first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        return os.open(path, os.O_RDONLY)


def wait_for(fd: int, *, shared: bool, deadline: float, what: object) -> None:
    """flock `fd`, polling until `deadline` (time.monotonic()); raises Locked naming `what`."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    while True:
        try:
            fcntl.flock(fd, mode)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise Locked(f"{what} is held by another process") from None
            time.sleep(0.01)


def try_fd(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def hold(log: Path, *, shared: bool = False, timeout: float = 30.0) -> Iterator[None]:
    """Block (polling, at most `timeout` seconds) until the lock is ours."""
    path = lock_path(log)
    fd = _open(path)
    try:
        wait_for(fd, shared=shared, deadline=time.monotonic() + timeout, what=path)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def create_locked(path: Path) -> int:
    """A new file at `path`, already locked (exclusively) when it appears under that name; close the fd to
    unlock. It is created under a hidden name and renamed, so no reader can lock it before its writer does."""
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new inode: nobody else can hold it yet
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return fd


class TryLock:
    """The writer's side: non-blocking, one descriptor kept open."""

    def __init__(self, log: Path) -> None:
        self.path = lock_path(log)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is None:
            self._fd = _open(self.path)
        return try_fd(self._fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
