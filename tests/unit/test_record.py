"""The access-log record: frozen plain fields, its outcome written as the wire value log readers know (C3)."""

from __future__ import annotations

import dataclasses
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy.access_log import formats
from privproxy.access_log.record import SCHEMA_VERSION, LogRecord
from privproxy.outcome import Outcome


def record(**kw) -> LogRecord:
    base = dict(ts=1700000000.5, request_id="0123456789abcdef", site="default", client="203.0.113.0", method="GET",
                scheme="https", host="shop.example", path="/p", proto="HTTP/1.1", status=504, bytes=None,
                duration_ms=60000.0, outcome=Outcome.UPSTREAM_TIMEOUT)
    return LogRecord(**{**base, **kw})


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        record().status = 200  # type: ignore[misc]


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_is_written_as_its_value(outcome):
    doc = orjson.loads(formats.json_line(record(outcome=outcome)))
    assert doc["outcome"] == outcome.value and doc["v"] == SCHEMA_VERSION
    assert formats.linked_line(record(outcome=outcome), "m-1", "k1").count(f'"outcome":"{outcome}"'.encode()) == 1


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.floats(min_value=-1e10, max_value=1e10), st.integers(0, 2**33).map(float),
                 st.floats(1.7e9, 1.7e9 + 3)))
def test_timestamps_are_written_as_strftime_writes_them(ts):
    # formats.iso makes the text of a second once; every instant still reads as strftime and its milliseconds.
    for t in (ts, ts + 0.0005, ts - 0.9995, ts):
        want = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        assert formats.iso(t) == want
