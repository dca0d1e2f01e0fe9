"""The upstream timer (issue 8, faults): started when the request leaves, stopped by any answer; the option
refuses nonsense. The end-to-end 504 is in tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from privproxy.mitm import flowview
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


def test_one_sweep_a_tick_expires_what_ran_out_and_keeps_the_rest(monkeypatch):
    expired: list[str] = []

    async def scenario() -> None:
        ut = UpstreamTimeout()
        with taddons.context(ut) as tctx:
            tctx.configure(ut, privproxy_upstream_timeout=0.2)  # a tick of 0.02 s
            monkeypatch.setattr(ut, "_expire", lambda f: expired.append(f.request.path) or 1 / (f.request.path != "/b"))
            flows = []
            for path in ("/a", "/b", "/c"):
                f = tflow.tflow()
                f.response, f.live, f.request.path = None, True, path
                flows.append(f)
            ut.request(flows[0])
            ut.request(flows[1])
            await asyncio.sleep(0.1)
            ut.request(flows[2])
            ut.response(flows[1])  # answered in time
            await asyncio.sleep(0.2)
            assert expired == ["/a"] and ut.deadline(flows[2]) is not None
            await asyncio.sleep(0.2)
            assert expired == ["/a", "/c"] and ut._sweeping is None  # nothing left: no more ticks
            # a failing expiry is logged and the others still expire
            for f in flows:
                ut.request(f)
            await asyncio.sleep(0.35)
            assert expired[2:] == ["/a", "/b", "/c"] and ut._waiting == {}

    asyncio.run(scenario())


def test_the_gateway_timeout_answer_is_a_complete_http1_response():
    head, _, body = GATEWAY_TIMEOUT.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 ") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
