"""Buffered log sink: flushed every second and on close; write errors counted, serving goes on (C3, C11)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privproxy.access_log import sink
from privproxy.access_log.sink import Sink
from tests.helpers import REPO


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_buffered_until_a_second_passes(tmp_path):
    clock = Clock()
    s = Sink(tmp_path / "a.jsonl", "access", clock=clock)
    s.write(b'{"a":1}\n')
    assert not (tmp_path / "a.jsonl").exists()
    clock.t = 1.01
    s.flush_if_due()
    assert (tmp_path / "a.jsonl").read_bytes() == b'{"a":1}\n'
    s.write(b'{"a":2}\n')
    s.close()
    assert (tmp_path / "a.jsonl").read_bytes().count(b"\n") == 2


def test_reopens_after_the_file_is_moved_away(tmp_path):
    s = Sink(tmp_path / "a.jsonl", "access")
    s.write(b"1\n")
    s.flush()
    os.rename(tmp_path / "a.jsonl", tmp_path / "a.jsonl.1")
    s.write(b"2\n")
    s.flush()
    assert (tmp_path / "a.jsonl").read_bytes() == b"2\n"
    assert (tmp_path / "a.jsonl.1").read_bytes() == b"1\n"


def test_write_errors_are_counted_not_raised(tmp_path):
    errors = []
    target = tmp_path / "ro"
    target.mkdir()
    (target / "a.jsonl").mkdir()  # a directory where the file should be: open() fails on every flush
    s = Sink(target / "a.jsonl", "access", on_error=lambda stream, reason: errors.append((stream, reason)))
    s.write(b"x\n")
    s.flush()
    s.write(b"y\n")
    s.flush()
    assert len(errors) == 2 and errors[0][0] == "access" and s.errors == 2


class Wall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


DAY1 = 1763769600.0  # 2025-11-22T00:00:00Z


def test_daily_rotation_names_files_by_the_day_of_their_records(tmp_path):
    from privproxy.access_log.rotation import Rotation

    wall = Wall(DAY1 + 3600)
    s = Sink(tmp_path / "access.jsonl", "access", rotation=Rotation(daily=True, retention_days=None), wall=wall)
    s.write(b"day1\n")
    s.flush()
    wall.t = DAY1 + 86400 + 60
    s.write(b"day2\n")
    s.flush()
    s.close()
    assert (tmp_path / "access-2025-11-22.jsonl").read_bytes() == b"day1\n"
    assert (tmp_path / "access.jsonl").read_bytes() == b"day2\n"


def test_size_rotation_keeps_whole_lines(tmp_path):
    from privproxy.access_log.rotation import Rotation

    wall = Wall(DAY1)
    s = Sink(tmp_path / "access.log", "access", rotation=Rotation(daily=False, max_bytes=25, retention_days=None),
             wall=wall)
    for i in range(6):
        s.write(f"line-{i:04d}\n".encode())  # 10 bytes each
        s.flush()
    s.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["access-2025-11-22.1.log", "access-2025-11-22.log", "access.log"]
    lines = b"".join(f.read_bytes() for f in files).splitlines()
    assert sorted(lines) == [f"line-{i:04d}".encode() for i in range(6)]
    assert all(f.stat().st_size <= 25 for f in files)


def test_retention_deletes_only_expired_rotated_files(tmp_path):
    from privproxy.access_log.rotation import Rotation

    for name in ("access-2025-10-01.jsonl", "access-2025-10-22.1.jsonl", "access-2025-11-01.jsonl",
                 "access-2025-11-21.jsonl", "other-2025-01-01.jsonl", "access-notes.txt"):
        (tmp_path / name).write_text("x\n")
    s = Sink(tmp_path / "access.jsonl", "access", rotation=Rotation(retention_days=30), wall=Wall(DAY1 + 10))
    assert s.expire() == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "access-2025-11-01.jsonl", "access-2025-11-21.jsonl", "access-notes.txt", "other-2025-01-01.jsonl"]


def test_locked_sink_keeps_its_lines_while_the_lock_is_held_in_this_process(tmp_path):
    from privproxy.access_log import lock

    errors = []
    s = Sink(tmp_path / "linked.jsonl", "linked", lambda st, r: errors.append(r), locked=True)
    with lock.hold(tmp_path / "linked.jsonl"):
        s.write(b"one\n")
        s.flush()
        assert not (tmp_path / "linked.jsonl").exists()  # not written, not dropped
    s.flush()
    s.close()
    assert (tmp_path / "linked.jsonl").read_bytes() == b"one\n" and errors == []


def test_retention_also_deletes_rotated_files_compressed_later(tmp_path):
    from privproxy.access_log.rotation import Rotation

    for name in ("linked-2025-10-01.jsonl.gz", "linked-2025-10-02.1.jsonl.xz", "linked-2025-11-21.jsonl.bz2",
                 "linked.jsonl.1.gz"):
        (tmp_path / name).write_text("x\n")
    s = Sink(tmp_path / "linked.jsonl", "linked", rotation=Rotation(retention_days=30), wall=Wall(DAY1 + 10))
    assert s.expire() == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == ["linked-2025-11-21.jsonl.bz2", "linked.jsonl.1.gz"]


# --- the linked log's lock: `dsr` in another process, the proxy never dropping a record because of it ---

HOLD = """
import sys, time
from pathlib import Path
from privproxy.access_log import lock
with lock.hold(Path(sys.argv[1]), timeout=5):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@contextmanager
def held_elsewhere(log: Path, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """Another process (as `dsr erase` is) holds the log's lock for `seconds`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(log), str(seconds)], stdout=subprocess.PIPE, env=env)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"held\n"
        yield p
    finally:
        p.kill()
        p.wait()


def lines(n: int, tag: str = "r") -> list[bytes]:
    return [f'{{"member":"m{i % 3}","id":"{tag}{i}"}}\n'.encode() for i in range(n)]


def test_locked_sink_keeps_its_lines_while_another_process_holds_the_lock(tmp_path):
    errors = []
    s = Sink(tmp_path / "linked.jsonl", "linked", lambda st, r: errors.append(r), locked=True)
    with held_elsewhere(tmp_path / "linked.jsonl", 30) as holder:
        s.write(b"one\n")
        s.flush()
        assert not (tmp_path / "linked.jsonl").exists()  # not written, not dropped
        holder.kill()
        holder.wait()
    s.flush()
    s.close()
    assert (tmp_path / "linked.jsonl").read_bytes() == b"one\n" and errors == []


def test_a_long_erase_sets_lines_aside_on_disk_and_they_come_back_in_order(tmp_path, monkeypatch):
    """Memory stays bounded (SPILL_BYTES) however long the lock is held, and nothing is dropped."""
    monkeypatch.setattr(sink, "SPILL_BYTES", 1000)
    log = tmp_path / "linked.jsonl"
    s = Sink(log, "linked", locked=True)
    s.write(b"before\n")
    s.flush()
    expected = [b"before\n", *lines(500)]
    with held_elsewhere(log, 30) as holder:
        for ln in expected[1:]:
            s.write(ln)
            s.flush()
            assert s._size < 1000 + 64
        chunks = sink.pending_chunks(log)
        assert len(chunks) >= 10 and all(c.name.startswith(f"linked.jsonl.pending-{os.getpid()}-") for c in chunks)
        assert log.read_bytes() == b"before\n"
        holder.kill()
        holder.wait()
    s.write(b"after\n")
    s.flush()
    assert log.read_bytes().splitlines(keepends=True) == [*expected, b"after\n"]
    assert sink.pending_chunks(log) == [] and s.dropped == 0 and s.errors == 0 and 450 < s.set_aside <= 500
    s.close()


def test_lines_are_set_aside_after_spill_seconds_even_when_few(tmp_path):
    clock = Clock()
    log = tmp_path / "linked.jsonl"
    s = Sink(log, "linked", clock=clock, locked=True)
    with held_elsewhere(log, 30):
        s.write(b"a\n")
        s.flush()
        assert sink.pending_chunks(log) == []
        clock.t += sink.SPILL_SECONDS
        s.flush()
        assert [c.read_bytes() for c in sink.pending_chunks(log)] == [b"a\n"] and s._buf == []
    s.close()


def test_close_during_an_erase_waits_a_bounded_time_then_sets_the_lines_aside(tmp_path):
    log = tmp_path / "linked.jsonl"
    s = Sink(log, "linked", locked=True, close_wait=0.3)
    with held_elsewhere(log, 30):
        for ln in lines(20):
            s.write(ln)
        started = time.monotonic()
        s.close()
        assert 0.3 <= time.monotonic() - started < 3
        assert not log.exists()
        [chunk] = sink.pending_chunks(log)
        assert chunk.read_bytes() == b"".join(lines(20)) and s.dropped == 0
    # The next writer (the proxy's next start) folds them in before its own first record.
    nxt = Sink(log, "linked", locked=True)
    nxt.write(b"next\n")
    nxt.close()
    assert log.read_bytes() == b"".join(lines(20)) + b"next\n" and sink.pending_chunks(log) == []


def test_close_while_a_short_erase_finishes_writes_to_the_live_file(tmp_path):
    log = tmp_path / "linked.jsonl"
    s = Sink(log, "linked", locked=True, close_wait=10)
    with held_elsewhere(log, 0.5):
        s.write(b"x\n")
        started = time.monotonic()
        s.close()
        assert time.monotonic() - started < 5
    assert log.read_bytes() == b"x\n" and sink.pending_chunks(log) == []


def test_chunks_an_earlier_run_left_are_folded_without_new_records(tmp_path):
    log = tmp_path / "linked.jsonl"
    log.write_bytes(b"live\n")
    (tmp_path / "linked.jsonl.pending-1-1").write_bytes(b"a\nb\n")
    (tmp_path / "linked.jsonl.pending-2-2").write_bytes(b'{"cut short')  # a crash while it was written
    os.utime(tmp_path / "linked.jsonl.pending-2-2", ns=(2, 2))
    os.utime(tmp_path / "linked.jsonl.pending-1-1", ns=(1, 1))
    clock = Clock()
    s = Sink(log, "linked", clock=clock, locked=True)
    clock.t = 1.5
    s.flush_if_due()
    assert log.read_bytes() == b'live\na\nb\n{"cut short\n' and sink.pending_chunks(log) == []
    s.close()


def test_a_chunk_is_locked_before_it_is_visible_so_no_reader_sees_half_of_it(tmp_path):
    from privproxy.access_log import lock

    chunk = tmp_path / "linked.jsonl.pending-9-9"
    fd = lock.create_locked(chunk)
    other = os.open(chunk, os.O_RDONLY)
    try:
        assert not lock.try_fd(other)
        os.close(fd)
        assert lock.try_fd(other)
    finally:
        os.close(other)
    assert [p.name for p in tmp_path.iterdir()] == ["linked.jsonl.pending-9-9"]


def test_a_chunk_still_being_written_by_another_instance_is_left_for_later(tmp_path):
    from privproxy.access_log import lock

    log = tmp_path / "linked.jsonl"
    fd = lock.create_locked(tmp_path / "linked.jsonl.pending-9-9")
    os.write(fd, b"half")
    s = Sink(log, "linked", locked=True)
    s.write(b"mine\n")
    s.flush()
    assert log.read_bytes() == b"mine\n"
    os.write(fd, b" and whole\n")
    os.close(fd)
    s.flush()
    assert log.read_bytes() == b"mine\nhalf and whole\n"
    s.close()


def test_when_no_chunk_can_be_written_lines_wait_in_memory_then_are_dropped_and_counted(tmp_path, monkeypatch):
    from privproxy.access_log import lock

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock, "create_locked", disk_full)
    monkeypatch.setattr(sink, "SPILL_BYTES", 10)
    monkeypatch.setattr(sink, "MAX_PENDING", 100)
    errors = []
    log = tmp_path / "linked.jsonl"
    s = Sink(log, "linked", lambda st, r: errors.append(r), locked=True, close_wait=0)
    with held_elsewhere(log, 30):
        s.write(b"x" * 20 + b"\n")
        s.flush()
        assert errors == ["disk_full"] and s.dropped == 0 and len(s._buf) == 1  # kept, tried again
        for _ in range(5):
            s.write(b"y" * 20 + b"\n")
        s.flush()
        assert s.dropped == 6 and s._buf == []  # past MAX_PENDING: dropped, and counted
        s.write(b"z\n")
        s.close()
    assert s.dropped == 7 and errors.count("disk_full") == 3 and not log.exists()
