"""Hooks run in place (internals.InlineHookHandler): a real mitmproxy Master in reverse mode, in this process, in
front of a small origin, with mitmproxy's own connection handler and with privproxy's. Both must give the addons
the same hooks in the same order and the client the same answers; privproxy's must start no task for a hook its
addons finish at once, and still wait for one they finish later."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging

import pytest
from mitmproxy import master, options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.proxy import mode_servers, server
from mitmproxy.utils import asyncio_utils

from privproxy.mitm import internals
from privproxy.mitm.dispatch import DirectAddonManager

FLOW_HOOKS = ("requestheaders", "request", "responseheaders", "response", "error")


class Recorder:
    """Notes every flow hook, with the path, and what it saw of the flow at that point."""

    def __init__(self, name: str = "recorder", calls: list | None = None) -> None:
        self.name = name
        self.calls: list[tuple[str, str, bool]] = [] if calls is None else calls
        for hook in FLOW_HOOKS:
            setattr(self, hook, self._note(hook))

    def _note(self, hook: str):
        def note(flow) -> None:
            self.calls.append((hook, flow.request.path, flow.response is not None))
        return note


class Later:
    """A request hook that finishes later (an awaitable), like privproxy's offloaded large beacon."""

    def __init__(self, calls: list) -> None:
        self.calls = calls

    async def request(self, flow) -> None:
        await asyncio.sleep(0.01)
        flow.request.headers["x-later"] = "1"
        self.calls.append(("later", flow.request.path, False))


class Intercept:
    """Holds /held until resumed 50 ms later, as mitmproxy's intercept feature would."""

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def request(self, flow) -> None:
        if flow.request.path == "/held":
            flow.intercept()
            asyncio.get_running_loop().call_later(0.05, self._resume, flow)

    def _resume(self, flow) -> None:
        self.calls.append(("resumed", flow.request.path, False))
        flow.resume()


class Crash:
    def request(self, flow) -> None:
        raise ValueError("boom")


class AnswerHere:
    """Answers every request in its request hook, as privproxy's redirects and refusals do."""

    def request(self, flow) -> None:
        from mitmproxy import http

        flow.response = http.Response.make(200, f"{flow.request.path} here".encode())


async def origin() -> tuple[asyncio.AbstractServer, int, list[bytes]]:
    """An HTTP/1.1 origin answering 200 with the request's path and its x-later header (/big/N: N bytes),
    keep-alive."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                path = head.split(b" ")[1]
                later = b"later" if b"x-later: 1" in head.lower() else b""
                body = b"b" * int(path[5:]) if path.startswith(b"/big/") else path + b" " + later
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1], heads


@contextlib.asynccontextmanager
async def proxy(inline: bool, addons: list[object]):
    """A Master in reverse mode in front of origin(), its connections handled by privproxy's handler (inline) or
    mitmproxy's; yields the Master and its port."""
    internals.run_hooks_in_place(inline)
    srv, up, _ = await origin()
    m = master.Master(options.Options())
    m.addons = DirectAddonManager(m)
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(), *addons)
    from tests.helpers import free_port

    port = free_port()
    m.options.update(mode=[f"reverse:http://127.0.0.1:{up}@127.0.0.1:{port}"], connection_strategy="lazy")
    run = asyncio.create_task(m.run())
    try:
        yield m, port
    finally:
        m.shutdown()
        await asyncio.wait_for(run, 10)
        srv.close()
        internals.run_hooks_in_place(False)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for _ in range(200):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
    raise AssertionError("the proxy did not listen")


async def through_proxy(inline: bool, addons: list[object], paths: list[str], monkeypatch,
                        pipelined: bool = False) -> tuple[list[bytes], int]:
    """Sends `paths` as keep-alive requests on one connection through a Master whose connections get privproxy's
    handler (inline) or mitmproxy's; the answers, and how many hook tasks mitmproxy's handler code started."""
    tasks = 0
    create_task = asyncio_utils.create_task

    def counting(coro, *, name, **kw):
        nonlocal tasks
        tasks += name.startswith("handle_hook(")
        return create_task(coro, name=name, **kw)

    monkeypatch.setattr(asyncio_utils, "create_task", counting)
    async with proxy(inline, addons) as (_, port):
        reader, writer = await connect(port)
        answers = []
        if pipelined:  # every request in one write, before any answer
            writer.write(b"".join(f"GET {path} HTTP/1.1\r\nHost: site.example\r\n\r\n".encode() for path in paths))
        for path in paths:
            if not pipelined:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: site.example\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
            answers.append(head.split(b"\r\n")[0] + b" " + await reader.readexactly(length))
        writer.close()
        return answers, tasks


PATHS = ["/a", "/b?x=1", "/c"]
SERVER_EVENT_12_3 = "1bd1da1c098ed80f0f4d0298b4fcc105daefe274da0c5ece3786133c6a784301"  # mitmproxy 12.3.x


def test_the_same_hooks_in_the_same_order_and_the_same_answers_without_a_task_per_hook(monkeypatch):
    seen = {}
    for inline in (False, True):
        rec = Recorder()
        answers, tasks = asyncio.run(through_proxy(inline, [rec], PATHS, monkeypatch))
        seen[inline] = (rec.calls, answers, tasks)
    (stock_calls, stock_answers, stock_tasks), (calls, answers, tasks) = seen[False], seen[True]
    assert calls == stock_calls
    assert [c[0] for c in calls] == ["requestheaders", "request", "responseheaders", "response"] * 3
    assert answers == stock_answers == [b"HTTP/1.1 200 OK /a ", b"HTTP/1.1 200 OK /b?x=1 ", b"HTTP/1.1 200 OK /c "]
    assert stock_tasks >= 12  # mitmproxy: a task per hook
    assert tasks == 0  # in place: none


def test_a_hook_finished_later_is_waited_for_in_order(monkeypatch):
    rec = Recorder()
    addons = [rec, Later(rec.calls), Recorder("after", rec.calls)]
    answers, tasks = asyncio.run(through_proxy(True, addons, PATHS, monkeypatch))
    assert answers == [b"HTTP/1.1 200 OK /a later", b"HTTP/1.1 200 OK /b?x=1 later", b"HTTP/1.1 200 OK /c later"]
    names = [c[0] for c in rec.calls]
    # the addon after the one that finished later runs after it, and the origin sees what it did (x-later)
    assert names == ["requestheaders", "requestheaders", "request", "later", "request", "responseheaders",
                     "responseheaders", "response", "response"] * 3
    assert tasks == 3  # only the request hooks that did not finish at once


def test_an_intercepted_flow_waits_until_resumed(monkeypatch):
    rec = Recorder()
    answers, tasks = asyncio.run(through_proxy(True, [Intercept(rec.calls), rec], ["/a", "/held", "/c"], monkeypatch))
    assert answers == [b"HTTP/1.1 200 OK /a ", b"HTTP/1.1 200 OK /held ", b"HTTP/1.1 200 OK /c "]
    held = [c[0] for c in rec.calls if c[1] == "/held"]
    assert held == ["requestheaders", "request", "resumed", "responseheaders", "response"]
    assert tasks == 1


def test_an_addon_error_is_logged_and_the_next_addon_still_runs(monkeypatch, caplog):
    rec = Recorder()
    with caplog.at_level(logging.ERROR):
        answers, _ = asyncio.run(through_proxy(True, [Crash(), rec], ["/a"], monkeypatch))
    assert answers == [b"HTTP/1.1 200 OK /a "]
    assert ("request", "/a", False) in rec.calls
    assert "Addon error: boom" in caplog.text


def test_pipelined_requests_answered_here_hand_later_completions_to_the_lock(monkeypatch):
    # Forty requests in one write, each answered in its request hook: a few complete in place, the rest through
    # tasks waiting for the lock (other connections get their turns between them), all answered, in order.
    paths = [f"/p{i}" for i in range(40)]
    rec = Recorder()
    answers, tasks = asyncio.run(through_proxy(True, [AnswerHere(), rec], paths, monkeypatch, pipelined=True))
    assert answers == [f"HTTP/1.1 200 OK {p} here".encode() for p in paths]
    assert [c[1] for c in rec.calls if c[0] == "request"] == paths
    # each call of server_event completes at most IN_PLACE hooks in place, then one goes through the lock
    assert len(rec.calls) == 4 * 40 and tasks >= len(rec.calls) // (internals.InlineHookHandler.IN_PLACE + 1)


def test_a_dispatch_that_raises_leaves_the_hook_uncompleted_and_the_event_going(caplog):
    class Broken:
        def lifecycle_now(self, hook):
            raise RuntimeError("broken dispatch")

    from mitmproxy.proxy.layers.http import HttpRequestHook
    from mitmproxy.test import tflow

    handler = internals.InlineHookHandler.__new__(internals.InlineHookHandler)
    handler.master = type("M", (), {"addons": Broken()})()
    handler.client = type("C", (), {"peername": ("127.0.0.1", 1)})()
    with caplog.at_level(logging.ERROR):
        assert handler._hook_now(HttpRequestHook(tflow.tflow())) is False  # no completion: the flow stalls
    assert "hook request failed" in caplog.text and "crashed" not in caplog.text


def test_without_direct_dispatch_every_hook_takes_mitmproxys_way(monkeypatch):
    async def scenario():
        internals.run_hooks_in_place(True)
        try:
            m = master.Master(options.Options())  # mitmproxy's own AddonManager: no lifecycle_now
            srv, up, _ = await origin()
            handler = internals.InlineHookHandler.__new__(internals.InlineHookHandler)
            handler.master = m
            started = []
            monkeypatch.setattr(asyncio_utils, "create_task", lambda coro, **kw: started.append(coro) or coro.close())
            monkeypatch.setattr(handler, "client", type("C", (), {"peername": ("127.0.0.1", 1)})(), raising=False)
            from mitmproxy.proxy.layers.http import HttpRequestHook
            from mitmproxy.test import tflow

            assert handler._hook_now(HttpRequestHook(tflow.tflow())) is False
            assert len(started) == 1
            srv.close()
        finally:
            internals.run_hooks_in_place(False)

    asyncio.run(scenario())


def test_pinned_to_mitmproxys_server_event_and_handler():
    """The handler repeats mitmproxy's server_event with one change; a mitmproxy upgrade that changes the original
    fails here, so that the copy is brought up to date (internals.InlineHookHandler.server_event)."""
    original = [line.strip() for line in inspect.getsource(server.ConnectionHandler.server_event).splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert hashlib.sha256("\n".join(original).encode()).hexdigest() == SERVER_EVENT_12_3, (
        "mitmproxy's ConnectionHandler.server_event changed: bring InlineHookHandler.server_event up to date, "
        "then record the new hash here")
    ours = inspect.getsource(internals.InlineHookHandler.server_event)
    for branch in ("commands.OpenConnection", "commands.RequestWakeup", "commands.ConnectionCommand",
                   "commands.SendData", "commands.CloseTcpConnection", "commands.CloseConnection",
                   "commands.StartHook", "commands.Log", "Unexpected command"):
        assert branch in "\n".join(original) and branch in ours
    # mitmproxy's hook: the lifecycle, then waiting for an intercepted flow, with the timeout disarmed
    hook = inspect.getsource(mode_servers.ProxyConnectionHandler.handle_hook)
    assert "self.timeout_watchdog.disarm()" in hook and "handle_lifecycle(hook)" in hook
    assert "data.wait_for_resume()" in hook
    assert "self.server_event(events.HookCompleted(hook))" in inspect.getsource(server.ConnectionHandler.hook_task)
    # the listeners build their handler by the module's name, which run_hooks_in_place replaces
    assert "handler = ProxyConnectionHandler(" in inspect.getsource(mode_servers.ServerInstance.handle_stream)
    internals.run_hooks_in_place(True)
    try:
        assert mode_servers.ProxyConnectionHandler is internals.InlineHookHandler
    finally:
        internals.run_hooks_in_place(False)
    assert mode_servers.ProxyConnectionHandler is not internals.InlineHookHandler


@pytest.fixture(autouse=True)
def _restore_handler():
    yield
    internals.run_hooks_in_place(False)


class Clients:
    def __init__(self) -> None:
        self.connected: list[object] = []
        self.disconnected: list[object] = []

    def client_connected(self, client) -> None:
        self.connected.append(client)

    def client_disconnected(self, client) -> None:
        self.disconnected.append(client)


@pytest.mark.parametrize("inline", [False, True])
def test_client_link_closes_one_open_connection_after_what_it_was_sent(inline):
    # internals.client_link, which the drain uses, on mitmproxy's connection handlers (either kind)
    async def scenario() -> dict[str, object]:
        clients = Clients()
        out: dict[str, object] = {}
        async with proxy(inline, [clients]) as (m, port):
            reader, writer = await connect(port)
            other = await connect(port)
            writer.write(b"GET /a HTTP/1.1\r\nHost: site.example\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            await asyncio.wait_for(reader.readexactly(3), 5)
            while len(clients.connected) < 2:
                await asyncio.sleep(0.01)
            first = next(c for c in clients.connected if c.peername[1] == writer.get_extra_info("sockname")[1])
            link = internals.client_link(m, first)
            assert link is not None
            out["quiet"] = link.quiet()
            await asyncio.sleep(0.2)
            out["quieter"] = link.quiet() - out["quiet"]
            out["unsent"] = link.unsent()
            out["closed"] = link.close()
            rest = await asyncio.wait_for(reader.read(), 5)  # EOF: the proxy closed it
            for _ in range(100):
                if clients.disconnected:
                    break
                await asyncio.sleep(0.01)
            out["again"] = link.close()
            for _ in range(100):  # its handler is unregistered once it has finished
                if internals.client_link(m, first) is None:
                    break
                await asyncio.sleep(0.01)
            out["gone"] = internals.client_link(m, first)
            other[1].write(b"GET /b HTTP/1.1\r\nHost: site.example\r\n\r\n")
            other_head = await asyncio.wait_for(other[0].readuntil(b"\r\n\r\n"), 5)  # the other one still serves
            writer.close()
            other[1].close()
            out.update(first=head.split(b"\r\n")[0] + rest, other=other_head.split(b"\r\n")[0],
                       disconnected=clients.disconnected == [first], connected=len(clients.connected))
        return out

    out = asyncio.run(scenario())
    assert 0 <= out["quiet"] < 5 and out["quieter"] >= 0.15  # seconds since its last event, growing while silent
    assert out["unsent"] == 0 and out["closed"] is True
    assert out["first"] == b"HTTP/1.1 200 OK" and out["disconnected"]
    assert out["other"] == b"HTTP/1.1 200 OK" and out["connected"] == 2
    assert out["gone"] is None and out["again"] is False  # a closed connection has nothing left to close
