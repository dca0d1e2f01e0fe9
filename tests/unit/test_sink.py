"""Buffered log sink: flushed every second and on close; write errors counted, serving goes on (C3, C11)."""

from __future__ import annotations

import os

from privproxy.access_log.sink import Sink


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


def test_locked_sink_keeps_its_lines_while_another_process_holds_the_lock(tmp_path):
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


def test_locked_sink_drops_and_counts_beyond_the_pending_limit(tmp_path, monkeypatch):
    from privproxy.access_log import lock, sink

    monkeypatch.setattr(sink, "MAX_PENDING", 10)
    errors = []
    s = Sink(tmp_path / "linked.jsonl", "linked", lambda st, r: errors.append(r), locked=True)
    with lock.hold(tmp_path / "linked.jsonl"):
        s.write(b"x" * 20 + b"\n")
        s.flush()
    assert errors == ["locked"]
    s.close()
    assert not (tmp_path / "linked.jsonl").exists()
