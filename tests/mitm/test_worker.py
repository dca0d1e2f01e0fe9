"""WorkerStatus (a worker's reports to its supervisor) and internals.listen_on (a worker accepts on the sockets its
supervisor bound)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import types

from mitmproxy.proxy import mode_servers

from privproxy import policy
from privproxy.mitm import internals, worker
from privproxy.mitm.shared import SharedState
from privproxy.mitm.worker import WorkerStatus
from privproxy.workers import Status


class Exporter:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def ready(self) -> tuple[bool, str]:
        return self.ok, "reason"


def test_status_says_ready_and_which_rules_then_not_ready_at_the_end(tmp_path):
    shared = SharedState()
    p = shared.swap(policy.default())
    path = tmp_path / "w.json"
    ws = WorkerStatus(shared, Exporter(True), str(path))
    ws.report()
    st = Status.read(path)
    assert st is not None and st.pid == os.getpid() and st.ready and st.sha256 == p.sha256
    ws.exporter = Exporter(False)
    ws.report()
    assert Status.read(path).ready is False
    ws.exporter = Exporter(True)
    ws.done()
    assert Status.read(path).ready is False  # stopping: never ready again


def test_a_worker_whose_supervisor_is_gone_drains(tmp_path, monkeypatch):
    shared = SharedState()
    shared.swap(policy.default())
    ws = WorkerStatus(shared, Exporter(True), str(tmp_path / "w.json"))
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(worker.os, "getppid", lambda: ws.parent + 1)
    monkeypatch.setattr(worker.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    ws.report()
    ws.report()
    assert sent == [(os.getpid(), signal.SIGTERM)]  # once: the drain does the rest


def test_listen_on_accepts_on_the_given_socket(monkeypatch):
    # mitmproxy's servers bind through listen(host, port): the method listen_on replaces
    assert "self.listen(host, port)" in inspect.getsource(mode_servers.AsyncioServerInstance._start)
    monkeypatch.setattr(mode_servers.ReverseInstance, "listen", mode_servers.ReverseInstance.listen)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    internals.listen_on({("127.0.0.1", port): [sock]})
    accepted = []

    async def scenario():
        async def handle(reader, writer):
            accepted.append(writer.get_extra_info("sockname"))
            writer.close()

        fake = types.SimpleNamespace(mode=types.SimpleNamespace(transport_protocol="tcp"), handle_stream=handle)
        servers = await mode_servers.ReverseInstance.listen(fake, "127.0.0.1", port)
        assert [s.sockets[0].getsockname() for s in servers] == [("127.0.0.1", port)]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        writer.close()
        for s in servers:
            s.close()

    asyncio.run(scenario())
    assert accepted == [("127.0.0.1", port)]
