"""Drain: requests in flight are counted once each, and shutdown waits for them (at most the timeout) (C2)."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy.test import tflow

from privproxy.mitm import flowview
from privproxy.mitm.drain import Drain


class Addons:
    def get(self, name: str):
        return None  # no proxyserver: nothing listens


class Master:
    def __init__(self) -> None:
        self.addons = Addons()
        self.stopped = 0

    def shutdown(self) -> None:
        self.stopped += 1


def test_each_flow_is_in_flight_until_its_first_end():
    d = Drain()
    f, g = tflow.tflow(), tflow.tflow()
    d.requestheaders(f)
    d.requestheaders(g)
    assert d.inflight == 2 and flowview.context(f).inflight
    d.response(f)
    d.error(f)  # an error after the response: still one end
    assert d.inflight == 1 and not flowview.context(f).inflight
    d.error(g)
    d.response(tflow.tflow())  # a flow it never counted
    assert d.inflight == 0


def test_shutdown_waits_for_flows_in_flight():
    async def scenario() -> tuple[int, int]:
        d, master, f = Drain(), Master(), tflow.tflow()
        d.requestheaders(f)
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, d.response, f)
        await d.drain(master, timeout=5)
        return d.inflight, master.stopped

    assert asyncio.run(scenario()) == (0, 1)


def test_shutdown_gives_up_after_the_timeout(caplog):
    async def scenario() -> int:
        d, master = Drain(), Master()
        d.requestheaders(tflow.tflow())
        await d.drain(master, timeout=0.1)
        return master.stopped

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == 1
    assert "1 requests still in flight" in caplog.text
