"""Sink(shared=True): several processes (the workers of `run --workers`) append whole records to one file, and
exactly one of them rotates it; the others notice the new file, so no record is lost, doubled or misfiled."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from privproxy.access_log import lock
from privproxy.access_log.rotation import Rotation
from privproxy.access_log.sink import Sink

DAY1 = 1763769600  # 2025-11-22T00:00:00Z


class Wall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sinks(path: Path, wall: Wall, rotation: Rotation, n: int = 2) -> list[Sink]:
    return [Sink(path, "access", rotation=rotation, wall=wall, shared=True) for _ in range(n)]


def test_one_writer_rotates_at_midnight_the_others_follow(tmp_path):
    wall = Wall(DAY1 + 3600)
    a, b = sinks(tmp_path / "access.jsonl", wall, Rotation(daily=True, retention_days=None))
    a.write(b"a-day1\n")
    a.flush()
    b.write(b"b-day1\n")
    b.flush()
    wall.t = DAY1 + 86400 + 60
    a.write(b"a-day2\n")
    a.flush()  # rotates
    b.write(b"b-day2\n")
    b.flush()  # finds the new file: appends, does not rotate it away again
    a.close()
    b.close()
    assert (tmp_path / "access-2025-11-22.jsonl").read_bytes() == b"a-day1\nb-day1\n"
    assert (tmp_path / "access.jsonl").read_bytes() == b"a-day2\nb-day2\n"
    assert a.rotations + b.rotations == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "access-2025-11-22.jsonl", "access.jsonl"]


def test_a_rotation_under_way_elsewhere_is_not_repeated(tmp_path):
    wall = Wall(DAY1 + 3600)
    path = tmp_path / "access.jsonl"
    (a,) = sinks(path, wall, Rotation(daily=True, retention_days=None), n=1)
    a.write(b"day1\n")
    a.flush()
    wall.t = DAY1 + 86400 + 60
    other = lock.TryLock(path.with_name(f"{path.name}.rotation"))
    assert other.acquire()  # another worker is rotating right now
    a.write(b"later\n")
    a.flush()  # writes on without rotating; tries again at the next flush
    other.release()
    other.close()
    assert a.rotations == 0 and path.read_bytes() == b"day1\nlater\n"
    a.write(b"day2\n")
    a.flush()
    a.close()
    assert a.rotations == 1 and path.read_bytes() == b"day2\n"


def test_size_rotation_counts_every_writers_bytes(tmp_path):
    wall = Wall(DAY1)
    a, b = sinks(tmp_path / "access.log", wall, Rotation(daily=False, max_bytes=45, retention_days=None))
    for i in range(6):
        for s, name in ((a, "a"), (b, "b")):
            s.write(f"{name}-line-{i:02d}\n".encode())  # 10 bytes each
            s.flush()
    a.close()
    b.close()
    files = sorted(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    lines = b"".join(f.read_bytes() for f in files).splitlines()
    assert sorted(lines) == sorted(f"{n}-line-{i:02d}".encode() for n in "ab" for i in range(6))
    assert all(f.stat().st_size <= 45 for f in files) and len(files) >= 3


def _writer(path: str, name: str, n: int) -> None:
    s = Sink(Path(path), "access", rotation=Rotation(daily=False, max_bytes=20_000, retention_days=None),
             shared=True)
    for i in range(n):
        s.write(json.dumps({"w": name, "i": i, "pad": "x" * 100}).encode() + b"\n")
        if i % 7 == 0:
            s.flush()
    s.close()


def test_processes_appending_and_rotating_together_keep_every_record_whole(tmp_path):
    path = tmp_path / "access.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), name, 600)) for name in "abc"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records = [json.loads(line) for f in tmp_path.glob("access*.jsonl") for line in f.read_text().splitlines()]
    assert sorted((r["w"], r["i"]) for r in records) == [(w, i) for w in "abc" for i in range(600)]
