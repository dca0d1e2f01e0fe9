"""Drain: requests in flight are counted once each; open connections are answered with `Connection: close` and
closed once idle; shutdown waits for both (at most the timeout) (C2)."""

from __future__ import annotations

import asyncio
import logging
import socket

from mitmproxy.test import tflow

from privproxy.mitm import drain, flowview, internals
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


class Link:
    """Stands in for internals.ClientLink: quiet for as long as the test says, bytes still to send, and a close
    that disconnects the client a moment later (or cannot close yet)."""

    def __init__(self, drain: Drain, client, closable: bool = True) -> None:
        self.drain, self.client, self.closable = drain, client, closable
        self.silent, self.pending, self.closes = 1e9, 0, 0
        self.leftover = 0  # unsent once closed (its transport still flushing)

    def quiet(self) -> float:
        return self.silent

    def unsent(self) -> int:
        return self.pending

    def close(self) -> bool:
        self.closes += 1
        self.pending = self.leftover
        if self.closable:
            asyncio.get_running_loop().call_soon(self.drain.client_disconnected, self.client)
        return self.closable


def draining(clock: Clock, closable: bool = True) -> tuple[Drain, dict[str, Link]]:
    links: dict[str, Link] = {}
    d = Drain(link=lambda c: links.setdefault(c.id, Link(d, c, closable)), clock=clock)
    return d, links


def on(client, path: str = "/", version: str = "HTTP/1.1"):
    f = tflow.tflow()
    f.client_conn = client
    f.request.path, f.request.http_version = path, version
    return f


async def until(condition, rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.002)


def test_an_open_connection_is_closed_once_idle_for_the_grace_and_shutdown_waits_for_it(monkeypatch):
    monkeypatch.setattr(drain, "_POLL", 0.001)
    clock = Clock()

    async def scenario() -> None:
        (d, links), master = draining(clock), Master()
        idle, busy = tflow.tclient_conn(), tflow.tclient_conn()
        d.client_connected(idle)
        d.client_connected(busy)
        f = on(busy)
        d.requestheaders(f)
        task = asyncio.create_task(d.drain(master, timeout=60))
        await asyncio.sleep(0.01)
        assert [links[idle.id].closes, master.stopped] == [0, 0]  # within the grace: a request may still come
        clock.now += drain.IDLE_GRACE
        await until(lambda: idle.id not in d._open)
        assert [links[idle.id].closes, links[busy.id].closes] == [1, 0]  # the busy one is left to finish
        clock.now += 5
        d.response(f)  # answered 5 s into the drain: idle from now, with its own grace
        await asyncio.sleep(0.01)
        assert links[busy.id].closes == 0 and master.stopped == 0
        clock.now += drain.IDLE_GRACE
        await asyncio.wait_for(task, 5)
        assert [links[busy.id].closes, master.stopped, d.inflight, len(d._open)] == [1, 1, 0, 0]

    asyncio.run(scenario())


def test_a_connection_with_recent_events_or_unsent_bytes_is_not_idle(monkeypatch):
    monkeypatch.setattr(drain, "_POLL", 0.001)
    clock = Clock()

    async def scenario() -> None:
        (d, links), master = draining(clock), Master()
        talking, sending = tflow.tclient_conn(), tflow.tclient_conn()
        d.client_connected(talking)
        d.client_connected(sending)
        links[talking.id].silent = 0.2  # bytes of a request arrived 0.2 s ago (its head not whole yet)
        links[sending.id].pending = 4096  # its last answer is still leaving
        task = asyncio.create_task(d.drain(master, timeout=60))
        await asyncio.sleep(0.005)
        clock.now += 10
        await asyncio.sleep(0.02)
        assert [links[talking.id].closes, links[sending.id].closes, master.stopped] == [0, 0, 0]
        links[talking.id].silent = drain.IDLE_GRACE
        links[talking.id].leftover = 100  # closed, but what was written to it must leave before the process
        links[sending.id].pending = 0
        await until(lambda: not d._open)
        await asyncio.sleep(0.02)
        assert master.stopped == 0
        links[talking.id].pending = 0
        await asyncio.wait_for(task, 5)
        assert master.stopped == 1

    asyncio.run(scenario())


def test_a_connection_that_cannot_be_closed_yet_is_tried_again_and_the_timeout_still_holds(monkeypatch, caplog):
    monkeypatch.setattr(drain, "_POLL", 0.001)
    clock = Clock()

    async def scenario() -> tuple[int, int]:
        (d, links), master = draining(clock, closable=False), Master()
        client = tflow.tclient_conn()
        d.client_connected(client)
        task = asyncio.create_task(d.drain(master, timeout=3))
        await asyncio.sleep(0.005)
        clock.now += drain.IDLE_GRACE
        await asyncio.sleep(0.02)
        tries = links[client.id].closes
        clock.now += 3
        await asyncio.wait_for(task, 5)
        return tries, master.stopped

    with caplog.at_level(logging.WARNING):
        tries, stopped = asyncio.run(scenario())
    assert tries > 1 and stopped == 1
    assert "1 connections still open or sending" in caplog.text


def test_a_connection_registered_after_its_hook_is_linked_when_the_drain_looks(monkeypatch):
    monkeypatch.setattr(drain, "_POLL", 0.001)
    clock = Clock()
    found: list[object] = []

    async def scenario() -> int:
        d, master = Drain(link=lambda c: found.pop() if found else None, clock=clock), Master()
        client = tflow.tclient_conn()
        d.client_connected(client)  # no link yet
        link = Link(d, client)
        found.append(link)
        task = asyncio.create_task(d.drain(master, timeout=60))
        await asyncio.sleep(0.005)
        clock.now += drain.IDLE_GRACE
        await asyncio.wait_for(task, 5)
        return link.closes

    assert asyncio.run(scenario()) == 1


def test_while_draining_http1_answers_close_their_connection():
    d = Drain(link=lambda c: None)
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


def test_a_real_drain_sends_a_slow_readers_whole_answer_before_it_stops(monkeypatch):
    """A real Master in this process: the answer is complete (its response hook has run) but most of it still waits
    in the proxy's transport, because the visitor reads slowly and the proxy's socket buffer is small. The drain
    neither closes that connection nor stops the Master until it has left."""
    from tests.mitm.test_inline_hooks import Clients, connect, proxy

    monkeypatch.setattr(drain, "IDLE_GRACE", 0.2)
    size = 600_000

    async def scenario() -> tuple[int, bool, int]:
        clients, d = Clients(), Drain()
        async with proxy(True, [clients, d]) as (m, port):
            await connect(port)  # listening
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the slow visitor's side of the link
            sock.connect(("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            while len(clients.connected) < 2:
                await asyncio.sleep(0.01)
            (mine,) = [c for c in clients.connected if c.peername[1] == sock.getsockname()[1]]
            link = internals.client_link(m, mine)
            sock = link._transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a slow link's worth in the kernel
            writer.write(f"GET /big/{size} HTTP/1.1\r\nHost: site.example\r\n\r\n".encode())
            for _ in range(500):  # mitmproxy writes the answer once its response hook has run
                if link.unsent():
                    break
                await asyncio.sleep(0.01)
            waiting, answered = link.unsent(), d.inflight == 0
            task = asyncio.create_task(d.drain(m, timeout=30))
            await asyncio.sleep(3 * drain.IDLE_GRACE)
            stopped_early = m.should_exit.is_set() or task.done()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = b""
            while chunk := await asyncio.wait_for(reader.read(65536), 5):
                body += chunk
            await asyncio.wait_for(task, 10)
            assert b"200 OK" in head and answered
            return waiting, stopped_early, len(body)

    waiting, stopped_early, received = asyncio.run(scenario())
    assert waiting > 100_000  # most of the answer was still in the process when the drain began
    assert not stopped_early and received == size
