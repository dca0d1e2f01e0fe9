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
