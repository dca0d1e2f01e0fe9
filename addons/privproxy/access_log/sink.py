"""[logging] Buffered append-only log files: whole lines per write, flushed at least every second (C3, C11).

A write error (full disk, permissions) is counted and reported once per kind, the buffered lines are dropped
rather than kept growing, and the proxy keeps serving.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from privproxy.access_log import rotation as rot
from privproxy.access_log.lock import TryLock

logger = logging.getLogger(__name__)

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0
MAX_PENDING = 64 * 1024 * 1024  # while another process holds the lock; beyond this, records are dropped (counted)


_REASONS = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EFBIG: "file_too_large",
            errno.EACCES: "permission", errno.EPERM: "permission", errno.EROFS: "read_only"}
ERROR_REASONS = ("disk_full", "file_too_large", "permission", "read_only", "io_error", "locked")  # metric label values


class Sink:
    def __init__(self, path: Path, stream: str, on_error: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, rotation: rot.Rotation | None = None,
                 wall: Callable[[], float] = time.time, locked: bool = False) -> None:
        self.path = path
        self._lock = TryLock(path) if locked else None  # files `dsr erase` may rewrite
        self.rotation = rotation
        self.wall = wall
        # The UTC day the live file's records belong to: after a restart, the day it was last written.
        self._day = rot.day_of(path.stat().st_mtime if path.exists() else wall())
        self._bytes = path.stat().st_size if path.exists() else 0
        self.rotations = 0
        self.stream = stream
        self.on_error = on_error or (lambda stream, reason: None)
        self.clock = clock
        self._buf: list[bytes] = []
        self._size = 0
        self._last_flush = clock()
        self._fd: int | None = None
        self._reported: set[str] = set()
        self.records = 0
        self.errors = 0

    def write(self, line: bytes) -> None:
        self._buf.append(line)
        self._size += len(line)
        self.records += 1
        if self._size >= FLUSH_BYTES or self.clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush_if_due(self) -> None:
        if self._buf and self.clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self.clock()
        if not self._buf:
            return
        if self._lock is not None:
            try:
                got = self._lock.acquire()
            except OSError as e:
                got = False
                self._fail(e)
            if not got:
                if self._size > MAX_PENDING:
                    self._buf.clear()
                    self._size = 0
                    self._fail(OSError(0, "the log stayed locked too long"), reason="locked")
                return  # keep the lines; the next flush tries again
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        try:
            self._maybe_rotate(len(data))
            fd = self._open()
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            self._bytes += len(data)
        except OSError as e:
            self._fail(e)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _maybe_rotate(self, incoming: int) -> None:
        if self.rotation is None:
            return
        now = self.wall()
        today = rot.day_of(now)
        r = self.rotation
        new_day = r.daily and today != self._day
        too_big = r.max_bytes is not None and self._bytes > 0 and self._bytes + incoming > r.max_bytes
        if not (new_day or too_big):
            return
        self._close()
        if rot.rotate(self.path, self._day) is not None:
            self.rotations += 1
        self._day, self._bytes = today, 0
        rot.delete_expired(self.path, r.retention_days, now)

    def expire(self) -> int:
        """Delete rotated files past retention now (also done at every rotation)."""
        return rot.delete_expired(self.path, self.rotation.retention_days if self.rotation else None, self.wall())

    def _open(self) -> int:
        if self._fd is not None:
            try:  # reopen when the file was moved away or deleted (rotation, `dsr erase`, logrotate)
                if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            self._close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._bytes = os.fstat(self._fd).st_size
        return self._fd

    def _fail(self, e: OSError, reason: str = "") -> None:
        reason = reason or _REASONS.get(e.errno or 0, "io_error")
        self.errors += 1
        self.on_error(self.stream, reason)
        if reason not in self._reported:  # once per kind: a full disk must not flood the terminal
            self._reported.add(reason)
            logger.error("privproxy: cannot write the %s log %s (%s); records are being dropped, serving goes on",
                         self.stream, self.path, e.strerror)
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        self.flush()
        if self._buf and self._lock is not None:  # shutting down while `dsr erase` runs: wait for it, briefly
            deadline = time.monotonic() + 5
            while self._buf and time.monotonic() < deadline:
                time.sleep(0.02)
                self.flush()
        self._close()
        if self._lock is not None:
            self._lock.close()
