"""privproxy.misses: a bounded set of keyed hashes of texts, never the texts."""

from __future__ import annotations

from privproxy import misses
from privproxy.misses import Misses


def test_remembers_hashes_of_short_texts_only_and_empties_when_full():
    m = Misses(longest=8, size=3)
    m.add("jane doe")
    assert "jane doe" in m and "jane do" not in m
    assert list(m._seen) == [hash("jane doe")]  # the hash, not the text
    m.add("x" * 9)
    assert "x" * 9 not in m and len(m) == 1  # longer than `longest`: never kept
    for text in ("a", "b"):
        m.add(text)
    assert len(m) == 3
    m.add("c")  # full: emptied, then kept
    assert len(m) == 1 and "c" in m and "a" not in m


def test_nothing_is_remembered_without_a_64_bit_hash(monkeypatch):
    monkeypatch.setattr(misses, "WIDE_HASH", False)
    m = Misses(longest=256)
    m.add("event")
    assert "event" not in m and len(m) == 0
