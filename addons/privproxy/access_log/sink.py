"""[logging] Buffered append-only log files: whole lines per write, flushed at least every second (C3, C11).

A write error (full disk, permissions) is counted and reported once per kind, and the proxy keeps serving. A
locked sink (the linked log, which `dsr erase` rewrites) never drops a record because the lock is taken.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from privproxy.access_log import lock
from privproxy.access_log import rotation as rot

logger = logging.getLogger(__name__)

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0
# While another process (`dsr`) holds the lock, lines wait in memory up to SPILL_BYTES or SPILL_SECONDS and
# are then set aside in a pending chunk on disk, so memory stays bounded however long an erase runs.
SPILL_BYTES = 4 * 1024 * 1024
SPILL_SECONDS = 5.0
MAX_PENDING = 64 * 1024 * 1024  # reached only when no chunk can be written either (disk full): dropped, counted
CLOSE_WAIT = 5.0  # seconds close() waits for the lock before setting its last lines aside
PENDING = ".pending-"  # linked.jsonl.pending-<pid>-<ns>: in `dsr`'s scope like every linked* file

_REASONS = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EFBIG: "file_too_large",
            errno.EACCES: "permission", errno.EPERM: "permission", errno.EROFS: "read_only"}
ERROR_REASONS = ("disk_full", "file_too_large", "permission", "read_only", "io_error", "locked")  # metric label values


def pending_chunks(log: Path) -> list[Path]:
    """Chunks set aside by any writer of `log` (this process, another instance, an earlier run), oldest first."""
    found = []
    for p in log.parent.glob(f"{log.name}{PENDING}*"):
        try:
            found.append((p.stat().st_mtime_ns, p.name, p))
        except FileNotFoundError:
            pass
    return [p for *_, p in sorted(found)]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Sink:
    def __init__(self, path: Path, stream: str, on_error: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, rotation: rot.Rotation | None = None,
                 wall: Callable[[], float] = time.time, locked: bool = False,
                 close_wait: float = CLOSE_WAIT, shared: bool = False) -> None:
        self.path = path
        self._lock = lock.TryLock(path) if locked else None  # files `dsr erase` may rewrite
        # Other processes append to the same file (the workers of `run --workers`): one of them rotates it, under
        # this lock, and the others notice the new file (see _rotate_shared).
        self._rotating = lock.TryLock(path.with_name(f"{path.name}.rotation")) if shared else None
        self._ino = path.stat().st_ino if shared and path.exists() else None  # the live file as last known
        self.rotation = rotation
        self.wall = wall
        # The UTC day the live file's records belong to: after a restart, the day it was last written.
        self._day = rot.day_of(path.stat().st_mtime if path.exists() else wall())
        self._bytes = path.stat().st_size if path.exists() else 0
        self.rotations = 0
        self.stream = stream
        self.on_error = on_error or (lambda stream, reason: None)
        self.clock = clock
        self.close_wait = close_wait
        self._buf: list[bytes] = []
        self._size = 0
        self._last_flush = clock()
        self._busy_since: float | None = None  # when the lock was first found taken, while it stays taken
        self._fold_due = locked  # chunks an earlier run may have left are folded in at the first flush
        self._fd: int | None = None
        self._reported: set[tuple[str, bool]] = set()
        self.records = 0
        self.errors = 0
        self.dropped = 0  # records lost to write errors (never to the lock)
        self.set_aside = 0  # records written to pending chunks while the lock was taken

    def write(self, line: bytes) -> None:
        self._buf.append(line)
        self._size += len(line)
        self.records += 1
        if self._size >= FLUSH_BYTES or self.clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush_if_due(self) -> None:
        if (self._buf or self._fold_due) and self.clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self.clock()
        if not self._buf and not self._fold_due:
            return
        if self._lock is not None:
            try:
                got = self._lock.acquire()
            except OSError as e:
                got = False
                self._count(e)
            if not got:
                self._while_locked()
                return  # the lines are kept (or set aside); the next flush tries again
            self._busy_since = None
        n, data = len(self._buf), b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        try:
            chunks = pending_chunks(self.path) if self._fold_due else []
            self._fold_due = False
            if data or chunks:
                self._maybe_rotate(len(data) + sum(_size_of(c) for c in chunks))
                fd = self._open()
                for chunk in chunks:
                    self._fold(fd, chunk)
                _write_all(fd, data)
                self._bytes += len(data)
        except OSError as e:
            self._fold_due = self._lock is not None  # chunks not yet folded stay on disk for the next try
            self._fail(e, dropped=n)
        finally:
            if self._lock is not None:
                self._lock.release()

    # Why pending chunks and not one side file appended to (`linked.jsonl.pending-<pid>`): `dsr erase`
    # rewrites every linked* file by rename while it holds the lock, and a side file the proxy appended to
    # without that lock would lose whatever was appended between dsr's read and its rename. A chunk is
    # written once, under a lock of its own taken before it has its name (lock.create_locked), and never
    # again: dsr can erase from it like from any linked file, and the next holder of the log's lock (this
    # sink, another instance, the next start) appends it to the live file and deletes it. A crash between
    # that append and the delete repeats the chunk's records: a duplicate, never a loss.
    def _while_locked(self) -> None:
        now = self.clock()
        if self._busy_since is None:
            self._busy_since = now
        if self._size >= SPILL_BYTES or now - self._busy_since >= SPILL_SECONDS:
            self._set_aside(last=False)

    def _set_aside(self, last: bool) -> bool:
        """Write the buffer to a new pending chunk. On failure the lines stay in memory, unless this is the
        last chance (close) or memory is past MAX_PENDING: then they are dropped, counted and reported."""
        if not self._buf:
            return True
        n, data = len(self._buf), b"".join(self._buf)
        chunk = self.path.with_name(f"{self.path.name}{PENDING}{os.getpid()}-{time.time_ns()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = lock.create_locked(chunk)
            try:
                _write_all(fd, data)
            except OSError:
                os.unlink(chunk)  # never half a chunk: the lines are still here, and are tried again
                raise
            finally:
                os.close(fd)
        except OSError as e:
            if last or self._size > MAX_PENDING:
                self._buf.clear()
                self._size = 0
                self._count(e, dropped=n)
            else:
                self._count(e)
            return False
        self._buf.clear()
        self._size = 0
        self._busy_since = None
        self._fold_due = True
        self.set_aside += n
        return True

    def _fold(self, fd: int, chunk: Path) -> None:
        """Append a pending chunk to the live file (we hold the log's lock), then delete it."""
        try:
            src = os.open(chunk, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as e:  # e.g. another user's chunk: it stays, and `dsr` still reads it
            self._count(e)
            return
        try:
            if not lock.try_fd(src):
                self._fold_due = True  # still being written by another instance
                return
            last = b"\n"
            while block := os.read(src, 1 << 20):
                _write_all(fd, block)
                self._bytes += len(block)
                last = block[-1:]
            if last != b"\n":  # a chunk cut short by a crash: its damaged line is not glued to the next record
                _write_all(fd, b"\n")
            os.fsync(fd)  # the chunk goes only once its records are safely in the live file
            os.unlink(chunk)
        finally:
            os.close(src)

    def _maybe_rotate(self, incoming: int) -> None:
        if self.rotation is None:
            return
        now = self.wall()
        today = rot.day_of(now)
        r = self.rotation
        if self._rotating is not None and self._fd is not None and r.max_bytes is not None:
            self._bytes = os.fstat(self._fd).st_size  # the other writers' records count too
        new_day = r.daily and today != self._day
        too_big = r.max_bytes is not None and self._bytes > 0 and self._bytes + incoming > r.max_bytes
        if not (new_day or too_big):
            return
        if self._rotating is not None:
            self._rotate_shared(today, now)
            return
        self._close()
        if rot.rotate(self.path, self._day) is not None:
            self.rotations += 1
        self._day, self._bytes = today, 0
        rot.delete_expired(self.path, r.retention_days, now)

    def _rotate_shared(self, today: str, now: float) -> None:
        """Rotate a file other processes append to: whoever takes the lock first and still finds the file it knows
        moves it aside; the others find another file (or none) there and only reopen. Whole-record O_APPEND
        writes never interleave, and a record written to the old file after the rename still lands in its day's
        file. The lock is only tried (the event loop never waits): taken, the rotation is being done now."""
        assert self._rotating is not None and self.rotation is not None
        try:
            if not self._rotating.acquire():
                return
        except OSError as e:
            self._count(e)
            return
        try:
            try:
                current: int | None = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            self._close()
            if current is not None and current == self._ino and rot.rotate(self.path, self._day) is not None:
                self.rotations += 1
                rot.delete_expired(self.path, self.rotation.retention_days, now)
            self._day, self._bytes = today, 0
        finally:
            self._rotating.release()

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
        st = os.fstat(self._fd)
        self._bytes = st.st_size
        if self._rotating is not None:
            self._ino = st.st_ino
        return self._fd

    def _count(self, e: OSError, reason: str = "", dropped: int = 0) -> None:
        reason = reason or _REASONS.get(e.errno or 0, "io_error")
        self.errors += 1
        self.dropped += dropped
        self.on_error(self.stream, reason)
        if (reason, dropped > 0) not in self._reported:  # once per kind: a full disk must not flood the terminal
            self._reported.add((reason, dropped > 0))
            logger.error("privproxy: cannot write the %s log %s (%s); %s, serving goes on", self.stream, self.path,
                         e.strerror, "records are being dropped" if dropped else "records are kept and retried")

    def _fail(self, e: OSError, reason: str = "", dropped: int = 0) -> None:
        self._count(e, reason, dropped)
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
        if self._buf and self._lock is not None:  # shutting down while `dsr` holds the lock: wait, within bounds
            deadline = time.monotonic() + self.close_wait
            while self._buf and time.monotonic() < deadline:
                time.sleep(0.02)
                self.flush()
            self._set_aside(last=True)  # still locked: the next writer or `dsr` finds the lines in a chunk
        self._close()
        if self._lock is not None:
            self._lock.close()
        if self._rotating is not None:
            self._rotating.close()


def _size_of(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
