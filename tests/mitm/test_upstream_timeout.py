"""The upstream timer (issue 8, faults): started when the request leaves, stopped by any answer; the option
refuses nonsense. The end-to-end 504 is in tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from privproxy.mitm import flowview, upstream_timeout
from privproxy.mitm.upstream_timeout import GATEWAY_TIMEOUT, UpstreamTimeout


def test_negative_timeout_is_refused_and_zero_turns_it_off():
    ut = UpstreamTimeout()
    with taddons.context(ut) as tctx:
        with pytest.raises(exceptions.OptionsError, match="privproxy_upstream_timeout"):
            tctx.configure(ut, privproxy_upstream_timeout=-1.0)
        tctx.configure(ut, privproxy_upstream_timeout=0.0)
        assert ut.seconds == 0.0
        f = tflow.tflow()
        f.response = None
        ut.request(f)  # no running loop needed: off means no timer at all
        assert flowview.peek(f) is None


def test_the_time_runs_from_the_request_and_any_answer_stops_it():
    async def scenario():
        ut = UpstreamTimeout()
        with taddons.context(ut) as tctx:
            tctx.configure(ut, privproxy_upstream_timeout=30.0)
            for hook in ("responseheaders", "response", "error"):
                f = tflow.tflow()
                f.response = None
                f.live = True
                ut.request(f)
                assert 29 < ut.deadline(f) - time.monotonic() <= 30
                getattr(ut, hook)(f)
                assert ut.deadline(f) is None
            answered = tflow.tflow(resp=True)  # answered by the proxy itself (a redirect): nothing to wait for
            ut.request(answered)
            assert ut.deadline(answered) is None and flowview.peek(answered) is None
            # A flow whose connection is gone when its time runs out: nothing happens, nothing is counted.
            gone = tflow.tflow()
            gone.response = None
            gone.live = True
            ut._expire(gone)
            assert ut.expired == 0 and flowview.outcome_of(gone) is None

    asyncio.run(scenario())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def waiting_flow(path: str):
    f = tflow.tflow()
    f.response, f.live, f.request.path = None, True, path
    return f


@contextlib.contextmanager
def swept(monkeypatch, seconds: float, failing: str = ""):
    """An UpstreamTimeout on a fake clock, its expiries noted by path (`failing`'s raises)."""
    clock, expired = Clock(), []
    monkeypatch.setattr(upstream_timeout, "time", clock)
    ut = UpstreamTimeout()
    with taddons.context(ut) as tctx:
        tctx.configure(ut, privproxy_upstream_timeout=seconds)
        monkeypatch.setattr(ut, "_expire", lambda f: expired.append(f.request.path) or 1 / (f.request.path != failing))
        yield ut, tctx, clock, expired


def test_a_sweep_expires_what_ran_out_and_keeps_the_rest(monkeypatch):
    async def scenario() -> None:
        # /b's expiry fails: logged, and the others still expire
        with swept(monkeypatch, 10.0, failing="/b") as (ut, _, clock, expired):
            a, b, c, d = (waiting_flow(p) for p in ("/a", "/b", "/c", "/d"))
            ut.request(a)
            ut.request(b)
            ut.request(c)
            assert ut._sweeping is not None and ut._sweeping.when() - ut._loop.time() <= upstream_timeout.TICK
            clock.now += 5
            ut.request(d)
            ut.response(c)  # answered in time
            ut._sweep()
            assert expired == []
            clock.now += 5
            ut._sweep()
            assert expired == ["/a", "/b"] and ut.deadline(d) == 1015.0 and ut._sweeping is not None
            clock.now += 5
            ut._sweep()
            assert expired == ["/a", "/b", "/d"] and ut._waiting == {} and ut._sweeping is None  # no more ticks

    asyncio.run(scenario())


def test_a_shorter_timeout_after_a_reload_is_kept_before_older_longer_ones(monkeypatch):
    # the order sent is the order of the deadlines only while the timeout stays the same
    async def scenario() -> None:
        with swept(monkeypatch, 60.0) as (ut, tctx, clock, expired):
            ut.request(waiting_flow("/old"))
            clock.now += 1
            tctx.configure(ut, privproxy_upstream_timeout=2.0)
            assert ut._sweeping.when() - ut._loop.time() <= 0.2  # the next sweep at the new, shorter tick
            ut.request(waiting_flow("/new"))
            clock.now += 2
            ut._sweep()
            assert expired == ["/new"]
            clock.now += 57
            ut._sweep()
            assert expired == ["/new", "/old"]
            assert ut._tick(0.001) == upstream_timeout.MIN_TICK and ut._tick(1.0) == 0.1

    asyncio.run(scenario())


def test_the_sweep_follows_a_new_event_loop_and_stops_at_done():
    ut = UpstreamTimeout()
    loops = []

    async def one(path: str) -> None:
        ut.request(waiting_flow(path))
        loops.append((ut._loop, asyncio.get_running_loop(), ut._sweeping is not None))

    with taddons.context(ut) as tctx:
        tctx.configure(ut, privproxy_upstream_timeout=30.0)
        asyncio.run(one("/first"))
        asyncio.run(one("/second"))  # the first loop is gone, with the sweep it had scheduled
        assert [(mine is running, scheduled) for mine, running, scheduled in loops] == [(True, True), (True, True)]
        ut.done()
        assert ut._waiting == {} and ut._sweeping is None


def test_the_gateway_timeout_answer_is_a_complete_http1_response():
    head, _, body = GATEWAY_TIMEOUT.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 ") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
