"""The upstream timer (issue 8, faults): started when the request leaves, stopped by any answer; the option
refuses nonsense. The end-to-end 504 is in tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncio

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


def test_timer_runs_from_the_request_and_any_answer_stops_it():
    async def scenario():
        ut = UpstreamTimeout()
        with taddons.context(ut) as tctx:
            tctx.configure(ut, privproxy_upstream_timeout=30.0)
            for hook in ("responseheaders", "response", "error"):
                f = tflow.tflow()
                f.response = None
                f.live = True
                ut.request(f)
                timer = flowview.context(f).timer
                assert 29 < timer.when() - asyncio.get_running_loop().time() <= 30
                getattr(ut, hook)(f)
                assert timer.cancelled() and flowview.context(f).timer is None
            answered = tflow.tflow(resp=True)  # answered by the proxy itself (a redirect): nothing to wait for
            ut.request(answered)
            assert flowview.peek(answered) is None
            # A flow whose connection is gone when the timer fires: nothing happens, nothing is counted.
            gone = tflow.tflow()
            gone.response = None
            gone.live = True
            ut._expire(gone)
            assert ut.expired == 0 and flowview.outcome_of(gone) is None

    asyncio.run(scenario())


def test_the_gateway_timeout_answer_is_a_complete_http1_response():
    head, _, body = GATEWAY_TIMEOUT.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 ") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
