"""Drain: requests in flight are counted once each; open connections are answered with `Connection: close` and
closed once idle; shutdown waits for both (at most the timeout) (C2)."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy.test import tflow

from privproxy.mitm import drain, flowview
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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Closer:
    """Stands in for internals.close_client: notes the client, and it disconnects a moment later."""

    def __init__(self, drain: Drain, works: bool = True) -> None:
        self.drain, self.works, self.closed = drain, works, []

    def __call__(self, master, client) -> bool:
        self.closed.append(client.id)
        if self.works:
            asyncio.get_running_loop().call_soon(self.drain.client_disconnected, client)
        return self.works


def on(client, path: str = "/", version: str = "HTTP/1.1"):
    f = tflow.tflow()
    f.client_conn = client
    f.request.path, f.request.http_version = path, version
    return f


def test_an_open_connection_is_closed_once_idle_for_the_grace_and_shutdown_waits_for_it(monkeypatch):
    monkeypatch.setattr("privproxy.mitm.drain._POLL", 0.001)
    clock = Clock()

    async def scenario() -> tuple[list[str], list[str], int, list[int]]:
        d, master = Drain(clock=clock), Master()
        closer = d._close = Closer(d)
        idle, busy = tflow.tclient_conn(), tflow.tclient_conn()
        d.client_connected(idle)
        d.client_connected(busy)
        f = on(busy)
        d.requestheaders(f)
        task = asyncio.create_task(d.drain(master, timeout=60))
        await asyncio.sleep(0.01)
        assert closer.closed == [] and master.stopped == 0  # within the grace: a request may still come
        clock.now += drain.IDLE_GRACE
        await asyncio.sleep(0.01)
        assert closer.closed == [idle.id] and master.stopped == 0  # the busy one is left to finish
        clock.now += 5
        d.response(f)  # its answer: idle from now
        await asyncio.sleep(0.01)
        seen = list(closer.closed)
        clock.now += drain.IDLE_GRACE
        await asyncio.wait_for(task, 5)
        return seen, [idle.id, busy.id], master.stopped, [d.inflight, len(d._open)]

    seen, (idle, busy), stopped, left = asyncio.run(scenario())
    assert seen == [idle]  # the one answered 5 s into the drain still had its own grace
    assert stopped == 1 and left == [0, 0]


def test_a_connection_that_cannot_be_closed_yet_is_tried_again_and_the_timeout_still_holds(monkeypatch, caplog):
    monkeypatch.setattr("privproxy.mitm.drain._POLL", 0.001)
    clock = Clock()

    async def scenario() -> tuple[int, int]:
        d, master = Drain(clock=clock), Master()
        closer = d._close = Closer(d, works=False)
        d.client_connected(tflow.tclient_conn())
        task = asyncio.create_task(d.drain(master, timeout=3))
        await asyncio.sleep(0.005)
        clock.now += drain.IDLE_GRACE
        await asyncio.sleep(0.02)
        tries = len(closer.closed)
        clock.now += 3
        await asyncio.wait_for(task, 5)
        return tries, master.stopped

    tries, stopped = asyncio.run(scenario())
    assert tries > 1 and stopped == 1


def test_while_draining_http1_answers_close_their_connection():
    d = Drain()
    client = tflow.tclient_conn()
    d.client_connected(client)
    before = on(client)
    before.response = tflow.tresp()
    d.response(before)
    assert "connection" not in before.response.headers  # not draining: keep-alive as the origin said
    d.draining = True
    flows = {v: on(client, version=v) for v in ("HTTP/1.1", "HTTP/1.0", "HTTP/2.0")}
    for f in flows.values():
        d.requestheaders(f)
        f.response = tflow.tresp()
        f.response.headers["connection"] = "keep-alive"
        d.responseheaders(f)
        d.response(f)
    assert [f.response.headers.get("connection") for f in flows.values()] == ["close", "close", "keep-alive"]
    upgrade = on(client)
    upgrade.response = tflow.tresp(status_code=101)
    upgrade.response.headers["connection"] = "upgrade"
    d.response(upgrade)
    assert upgrade.response.headers["connection"] == "upgrade"  # a WebSocket keeps its connection
    assert d._open[client.id].busy == 0
