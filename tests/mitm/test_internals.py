"""Each mitmproxy internal privproxy relies on (privproxy.mitm.internals), checked against the installed mitmproxy:
a test here fails when an upgrade changes what one of them relies on. The guarded HTTP layer is driven event by
event, as mitmproxy's connection handler drives it, without sockets."""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import re
import socket
import ssl
import subprocess
import sys
import weakref
from collections.abc import Callable

import pytest
from hypothesis import given, settings, strategies as st
from cryptography.hazmat.primitives import serialization
from mitmproxy import connection, hooks, http, master, options, tls
from mitmproxy.addons import errorcheck, proxyserver, tlsconfig
from OpenSSL import SSL
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import commands, events, mode_servers, mode_specs, server
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers.http import ErrorCode, RequestProtocolError, ResponseProtocolError
from mitmproxy.test import taddons, tflow
from mitmproxy.utils import asyncio_utils, typecheck

from privproxy.mitm import flowview, internals
from tests.mitm.conftest import collector_off

HSTS = "max-age=63072000; includeSubDomains"
WS_KEY = base64.b64encode(b"0123456789abcdef").decode()


class Settings:
    max_head = 4096
    head_timeout = 30.0
    body: int | None = 1000

    def hsts(self, flow, tls: bool) -> str | None:
        return HSTS

    def body_limit(self, flow) -> int | None:
        return self.body


@pytest.fixture
def guarded():
    settings = Settings()
    internals.guard_http(settings)
    yield settings


class Driver:
    """Feeds events to an HttpLayer and plays the connection handler: hooks complete at once (after `on_hook`),
    origin connections open (or fail with `connect_error`), data sent is collected per connection."""

    def __init__(self, on_hook: Callable[[commands.StartHook], None] = lambda hook: None,
                 connect_error: str | None = None) -> None:
        self.tctx = taddons.context(proxyserver.Proxyserver())
        self.opts = self.tctx.__enter__().options
        mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:8080")
        self.client = connection.Client(peername=("127.9.8.7", 5555), sockname=("127.0.0.1", 8443),
                                        timestamp_start=0, proxy_mode=mode, state=ConnectionState.OPEN)
        self.client.timestamp_tls_setup = 1  # as after the TLS layer (tls_established)
        self.context = Context(self.client, self.opts)
        self.context.server.address = ("127.0.0.1", 8080)
        self.layer = http_layer.HttpLayer(self.context, http_layer.HTTPMode.transparent)
        self.on_hook, self.connect_error = on_hook, connect_error
        self.sent: dict[connection.Connection, bytearray] = {}
        self.closed: list[connection.Connection] = []
        self.hooks: list[commands.StartHook] = []
        self.wakeups: list[commands.RequestWakeup] = []
        self.server: connection.Server | None = None
        self.feed(events.Start())

    def close(self) -> None:
        self.tctx.__exit__(None, None, None)

    def feed(self, event: events.Event) -> None:
        pending = [event]
        while pending:
            for cmd in self.layer.handle_event(pending.pop(0)):
                if isinstance(cmd, commands.SendData):
                    self.sent.setdefault(cmd.connection, bytearray()).extend(cmd.data)
                elif isinstance(cmd, commands.CloseConnection):
                    self.closed.append(cmd.connection)
                elif isinstance(cmd, commands.StartHook):
                    self.hooks.append(cmd)
                    self.on_hook(cmd)
                    if cmd.blocking:
                        pending.append(events.HookCompleted(cmd))
                elif isinstance(cmd, commands.OpenConnection):
                    self.server = cmd.connection
                    if self.connect_error is None:
                        cmd.connection.state = ConnectionState.OPEN
                        cmd.connection.timestamp_start = 1
                    pending.append(events.OpenConnectionCompleted(cmd, self.connect_error))
                elif isinstance(cmd, commands.RequestWakeup):
                    self.wakeups.append(cmd)

    def send(self, data: bytes) -> None:
        self.feed(events.DataReceived(self.client, data))

    def origin_says(self, data: bytes) -> None:
        assert self.server is not None
        self.feed(events.DataReceived(self.server, data))

    def to_client(self) -> bytes:
        return bytes(self.sent.get(self.client, b""))

    def to_origin(self) -> bytes:
        return bytes(self.sent.get(self.server, b"")) if self.server else b""

    def errors(self) -> list[http.HTTPFlow]:
        return [h.flow for h in self.hooks if h.name == "error"]


@pytest.fixture
def driver(guarded):
    made: list[Driver] = []

    def make(**kw) -> Driver:
        d = Driver(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def head_of(data: bytes) -> tuple[str, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status, *lines = head.split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


# -- hook dispatch, listeners, connections, tasks -------------------------------------------------------------


def test_addon_hooks_walks_sub_addons_in_order():
    class Child:
        def request(self, flow):
            pass

    class Parent:
        def __init__(self) -> None:
            self.addons = [Child()]

        def request(self, flow):
            pass

    with taddons.context() as tctx:
        parent = Parent()
        funcs = internals.addon_hooks(tctx.master.addons, parent, http_layer.HttpRequestHook(tflow.tflow()))
        assert [f.__self__ for f in funcs] == [parent, parent.addons[0]]
        assert internals.addon_hooks(tctx.master.addons, parent, hooks.DoneHook()) == []


def test_accept_reverse_connections_hands_over_the_writer_mitmproxy_reads_the_peer_from():
    original = mode_servers.ReverseInstance.handle_stream
    seen: list[tuple] = []

    async def scenario():
        async def accept(reader, writer):
            seen.append(writer.get_extra_info("peername"))
            return internals.with_peer(writer, ("203.0.113.9", 1234))

        internals.accept_reverse_connections(accept)
        assert mode_servers.ReverseInstance.handle_stream is not original
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*srv.sockets[0].getsockname()[:2])
        with taddons.context(proxyserver.Proxyserver()) as tctx:
            peer_writer = internals.with_peer(writer, ("203.0.113.9", 1234))
            mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:8080")
            handler = mode_servers.ProxyConnectionHandler(tctx.master, reader, peer_writer, tctx.options, mode)
            assert handler.client.peername == ("203.0.113.9", 1234)  # mitmproxy took the announced peer
        writer.close()
        srv.close()

    try:
        asyncio.run(scenario())
    finally:
        internals.accept_reverse_connections(None)
    assert mode_servers.ReverseInstance.handle_stream is original


def test_give_up_on_origin_finds_the_connection_where_mitmproxy_keeps_it():
    # proxyserver.connections[client.id] -> ConnectionHandler; .transports[server].handler; .server_event
    assert "register_connection(handler.layer.context.client.id" in inspect.getsource(
        mode_servers.ServerInstance.handle_stream)
    ps = proxyserver.Proxyserver()
    assert ps.connections == {}
    assert {f for f in server.ConnectionIO.__dataclass_fields__} >= {"handler", "reader", "writer"}
    assert asyncio.iscoroutinefunction(server.ConnectionHandler.server_event)
    with taddons.context(ps) as tctx:
        f = tflow.tflow()
        assert internals.give_up_on_origin(f, b"") is False  # no such connection: nothing waits
        assert tctx.master.addons.get("proxyserver") is ps


def test_stop_listening_and_retire_errorcheck_use_the_proxyserver_and_errorcheck_addons():
    async def scenario():
        m = master.Master(options.Options())
        ec = errorcheck.ErrorCheck()
        ps = proxyserver.Proxyserver()
        m.addons.add(ps, ec)
        assert ec.logger in logging.getLogger().handlers
        internals.retire_errorcheck(m)
        assert m.addons.get("errorcheck") is None and ec.logger not in logging.getLogger().handlers
        internals.retire_errorcheck(m)  # idempotent
        assert list(ps.servers) == []  # iterable of instances, each with an async stop()
        assert asyncio.iscoroutinefunction(mode_servers.ServerInstance.stop)
        await internals.stop_listening(m)

    asyncio.run(scenario())


def test_eager_tasks_for_uvloop_replaces_mitmproxys_task_factory(monkeypatch):
    uvloop = pytest.importorskip("uvloop")
    assert "asyncio_utils.set_eager_task_factory()" in inspect.getsource(master.Master.run)  # looked up at run
    monkeypatch.setattr(asyncio_utils, "set_eager_task_factory", asyncio_utils.set_eager_task_factory)
    internals.eager_tasks_for_uvloop()
    ran: list[str] = []

    async def main():
        with asyncio_utils.set_eager_task_factory():
            async def child():
                ran.append("eager")

            task = asyncio.get_running_loop().create_task(child())
            assert ran == ["eager"]  # ran before create_task returned: an eager task
            await task

    uvloop.run(main())
    assert ran == ["eager"]


def test_skip_message_typecheck_retires_only_mitmproxys_debug_type_check(monkeypatch):
    # What is retired is still only the debug check over every field, defined once for requests and responses
    # (a mitmproxy upgrade that puts other work there, or a __post_init__ of their own, fails here).
    assert "if __debug__:" in inspect.getsource(http.MessageData)
    body = [line.strip() for line in inspect.getsource(http.MessageData.__post_init__).splitlines()[1:]]
    assert body == ["for field in fields(self):", "val = getattr(self, field.name)",
                    "typecheck.check_option_type(field.name, val, field.type)"]
    assert not any("__post_init__" in vars(c) for c in (http.RequestData, http.ResponseData))
    monkeypatch.setattr(http.MessageData, "__post_init__", http.MessageData.__post_init__)  # restored after

    def ill_typed():
        return http.ResponseData(http_version=b"HTTP/1.1", headers=http.Headers(), content=b"", trailers=None,
                                 timestamp_start=0.0, timestamp_end=None, status_code="200", reason=b"OK")  # type: ignore

    with pytest.raises(TypeError):
        ill_typed()
    internals.skip_message_typecheck()
    assert ill_typed().status_code == "200"  # nothing checks any more

    def refuse(*_):
        raise AssertionError("type-checked")

    monkeypatch.setattr(typecheck, "check_option_type", refuse)
    req = http.Request.make("GET", "https://a.example/", b"body", {"x-a": "1"})
    resp = http.Response.make(204, b"", {"cache-control": "no-store"})
    assert req.content == b"body" and req.headers["x-a"] == "1" and resp.status_code == 204
    assert http.Request.from_state(req.get_state()).get_state() == req.get_state()  # as flow files read back


# -- listen addresses and the operator's certificates ---------------------------------------------------------


@pytest.mark.parametrize("host", ["::1", "::", "127.0.0.1", "0.0.0.0"])
def test_reverse_mode_puts_an_ipv6_listen_address_where_mitmproxy_binds_it(host):
    mode = mode_specs.ProxyMode.parse(internals.reverse_mode("http://[::1]:8080", host, 8443))
    assert mode.listen_host() == host and mode.listen_port() == 8443
    assert mode.address == ("::1", 8080)  # the upstream part keeps its own brackets

    if host in ("::", "0.0.0.0"):
        return  # the tests listen on loopback addresses only

    async def bind() -> tuple:
        srv = await asyncio.start_server(lambda r, w: None, mode.listen_host(), 0)  # as ServerInstance.listen
        name = srv.sockets[0].getsockname()
        srv.close()
        return name

    assert asyncio.run(bind())[0] == host


def test_listener_message_is_mitmproxys_record_of_its_listeners(caplog):
    busy = socket.socket(socket.AF_INET6)
    busy.bind(("::1", 0))
    busy.listen()
    port = busy.getsockname()[1]

    async def scenario() -> list[bool]:
        ps = proxyserver.Proxyserver()
        with taddons.context(ps) as tctx:
            results = []
            for mode in ([internals.reverse_mode("http://127.0.0.1:8080", "::1", 0)],  # starts
                         [],  # stops
                         [internals.reverse_mode("http://127.0.0.1:8080", "::1", port)]):  # cannot bind
                tctx.configure(ps, mode=mode)
                results.append(await ps.setup_servers())
            return results

    try:
        with caplog.at_level(logging.INFO):
            assert asyncio.run(scenario()) == [True, True, False]
    finally:
        busy.close()
    listening, stopped, failed = [r for r in caplog.records if internals.listener_message(r)]
    assert "reverse proxy to http://127.0.0.1:8080 listening at [::1]:" in listening.getMessage()
    assert stopped.getMessage().endswith(" stopped.") and "[::1]:" in stopped.getMessage()
    assert f"failed to listen on ::1:{port}" in failed.getMessage()
    for name in (proxyserver.__name__, mode_servers.__name__):
        visitor = logging.LogRecord(name, logging.ERROR, __file__, 1, "client 203.0.113.7 said x", (), None)
        assert not internals.listener_message(visitor)


def tls_handshake(server_conn, cafile: str | ssl.SSLContext, sni: str) -> ssl.SSLObject:
    """A TLS handshake between mitmproxy's pyOpenSSL connection and Python's ssl client (verifying against
    `cafile`, or configured as the context given), in memory."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = cafile if isinstance(cafile, ssl.SSLContext) else ssl.create_default_context(cafile=cafile)
    client = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    for _ in range(10):
        try:
            client.do_handshake()
            return client
        except ssl.SSLWantReadError:
            pass
        server_conn.bio_write(outgoing.read())
        try:
            server_conn.do_handshake()
        except SSL.WantReadError:
            pass
        incoming.write(server_conn.bio_read(65536))
    raise AssertionError("no handshake")


def test_choose_certificates_serves_the_operators_certificate_with_its_chain(tmp_path):
    from tests.certs import Authority

    ca = Authority()
    issued = ca.issue("shop.example")
    root = ca.root_pem(tmp_path / "root.pem")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(ca.intermediate.public_bytes(serialization.Encoding.PEM))
    entry = internals.certificate_entry(issued.cert, issued.key, [ca.intermediate], chain)
    asked: list[str | None] = []

    def choose(sni: str | None):
        asked.append(sni)
        return entry if sni == "shop.example" else None

    tc = tlsconfig.TlsConfig()
    with taddons.context(tc) as tctx:
        tctx.configure(tc, confdir=str(tmp_path / "conf"))

        def start(sni: str) -> tls.TlsData:
            client = connection.Client(peername=("127.9.8.7", 5555), sockname=("127.0.0.1", 8443),
                                       timestamp_start=1)
            client.sni = sni
            data = tls.TlsData(client, Context(client, tctx.options))
            tc.tls_start_client(data)
            return data

        assert internals.choose_certificates(tctx.master, choose) is True
        c = tls_handshake(start("shop.example").ssl_conn, str(root), "shop.example")
        # a client that trusts only the root verified it: the intermediate came along, and only once
        assert c.getpeercert(binary_form=True) == issued.cert.public_bytes(serialization.Encoding.DER)
        assert len(c.get_unverified_chain()) == 2
        other = start("other.example").ssl_conn.get_certificate().to_cryptography()
        assert other.issuer != issued.cert.issuer  # None from choose: mitmproxy's CA made one
        assert asked == ["shop.example", "other.example"]
        assert internals.choose_certificates(tctx.master, None) is True
        mine = start("shop.example").ssl_conn.get_certificate().to_cryptography()
        assert mine != issued.cert and asked == ["shop.example", "other.example"]
    with taddons.context() as tctx:
        assert internals.choose_certificates(tctx.master, choose) is False  # no tlsconfig addon


def test_answer_acme_tls_alpn_replaces_the_connection_tlsconfig_prepared(tmp_path):
    """RFC 8737: a handshake offering acme-tls/1 gets the challenge certificate and that protocol. mitmproxy's TLS
    layer handshakes with the SSL connection a tls_start_client hook leaves in the TlsData, and tlsconfig's own
    does not select acme-tls/1 (its ALPN choice allows HTTP protocols only)."""
    from mitmproxy.proxy.layers import tls as tls_layer

    from privproxy.acme_client import challenge_certificate

    source = inspect.getsource(tls_layer.TLSLayer.start_tls)
    assert "TlsStartClientHook(tls_start)" in source and "self.tls = tls_start.ssl_conn" in source
    cert, key = challenge_certificate("shop.example", "token.thumbprint")
    tc = tlsconfig.TlsConfig()
    with taddons.context(tc) as tctx:
        tctx.configure(tc, confdir=str(tmp_path / "conf"))

        def start(sni: str, offers: list[bytes]) -> tls.TlsData:
            client = connection.Client(peername=("127.9.8.7", 5555), sockname=("127.0.0.1", 443), timestamp_start=1)
            client.sni, client.alpn_offers = sni, offers
            data = tls.TlsData(client, Context(client, tctx.options))
            tc.tls_start_client(data)  # mitmproxy's own first, as in privproxy run
            return data

        def handshake(conn, offers: list[str]) -> ssl.SSLObject:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the CA checks the extension, not a chain
            ctx.set_alpn_protocols(offers)
            return tls_handshake(conn, ctx, "shop.example")

        mitmproxys = start("shop.example", [b"acme-tls/1"])
        assert handshake(mitmproxys.ssl_conn, ["acme-tls/1"]).selected_alpn_protocol() is None  # the CA refuses
        data = start("shop.example", [b"acme-tls/1"])
        assert internals.acme_tls_alpn_sni(data) == "shop.example"
        internals.answer_acme_tls_alpn(data, cert, key)
        c = handshake(data.ssl_conn, ["acme-tls/1"])
        assert c.selected_alpn_protocol() == "acme-tls/1"
        assert c.getpeercert(binary_form=True) == cert.public_bytes(serialization.Encoding.DER)
        assert internals.acme_tls_alpn_sni(start("shop.example", [b"h2", b"http/1.1"])) is None
        assert internals.acme_tls_alpn_sni(start("shop.example", [])) is None


# -- the guarded HTTP layer -----------------------------------------------------------------------------------


def test_guard_http_replaces_the_classes_mitmproxy_instantiates(guarded):
    assert http_layer.Http1Server is internals.GuardedHttp1Server
    assert http_layer.HttpStream is internals.GuardedHttpStream
    # mitmproxy looks both up by these names when a connection and a request start
    assert "Http1Server" in http_layer.HttpLayer._handle_event.__code__.co_names
    assert "HttpStream" in http_layer.HttpLayer.make_stream.__code__.co_names


def test_an_ordinary_request_passes_unchanged(driver):
    d = driver()
    d.send(b"GET /a HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, keep-alive\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
    sent = d.to_origin()
    assert sent.startswith(b"GET /a HTTP/1.1\r\n")
    status, headers = head_of(sent)
    assert "upgrade" not in headers and "http2-settings" not in headers and headers["connection"] == "keep-alive"
    d.origin_says(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert d.to_client().startswith(b"HTTP/1.1 200 OK") and d.to_client().endswith(b"ok")
    assert [h.name for h in d.hooks] == ["requestheaders", "request", "responseheaders", "response"]


def test_a_valid_websocket_handshake_keeps_its_upgrade_and_is_relayed_as_websocket(driver):
    d = driver()
    d.send(f"GET /ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\nHTTP2-Settings: x\r\n\r\n".encode())
    _, headers = head_of(d.to_origin())
    assert headers["upgrade"] == "websocket" and "http2-settings" not in headers
    d.origin_says(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: x\r\n\r\n")
    assert d.to_client().startswith(b"HTTP/1.1 101")
    stream = next(iter(d.layer.streams.values()))
    assert type(stream.child_layer).__name__ == "WebsocketLayer"
    assert stream in stream.context.layers  # an upgraded stream lives on: never ended (GuardedHttpStream._end)


@pytest.mark.parametrize("bad", [
    {"sec-websocket-version": "8"},
    {"sec-websocket-key": base64.b64encode(b"short").decode()},
    {"sec-websocket-key": "not base64 at all, 24ch"},
    {"upgrade": "websocket, h2c"},
    {"connection": "keep-alive"},
])
def test_websocket_handshake_follows_rfc_6455(bad):
    fields = {"host": "a", "connection": "Upgrade", "upgrade": "websocket", "sec-websocket-key": WS_KEY,
              "sec-websocket-version": "13"}
    good = http.Request.make("GET", "http://a/ws", headers=fields)
    good.http_version = "HTTP/1.1"
    assert internals.websocket_handshake(good)
    assert not internals.websocket_handshake(http.Request.make("GET", "http://a/ws", headers={**fields, **bad}))
    post = http.Request.make("POST", "http://a/ws", headers=fields)
    assert not internals.websocket_handshake(post)


@pytest.mark.parametrize("upgrade, answer", [
    ("h2c", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"),
    ("foo", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\nraw bytes"),
    ("websocket", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"),
])
def test_any_other_101_is_a_502_and_ends_both_connections(driver, upgrade, answer):
    d = driver()
    d.send(f"GET /up HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n"
           f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    d.origin_says(answer)
    status, headers = head_of(d.to_client())
    assert status == "HTTP/1.1 502 Bad Gateway" and headers["connection"] == "close"
    assert "server" not in headers
    assert d.server in d.closed and d.client in d.closed
    (response_hook,) = [h for h in d.hooks if h.name == "response"]
    assert response_hook.flow.response.status_code == 502
    assert flowview.outcome_of(response_hook.flow) == "upgrade_refused"
    d.origin_says(b"GET /smuggled HTTP/1.1\r\n\r\n")  # whatever follows is nobody's
    d.send(b"GET /second HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert b"/second" not in d.to_origin() and b"smuggled" not in d.to_client()


def test_an_unparsable_request_line_is_answered_400_and_reported(driver):
    d = driver()
    d.send(b"GET /a?email=x HTTP/1.1 junk\r\nHost: shop.example\r\n\r\n")
    status, headers = head_of(d.to_client())
    assert status == "HTTP/1.1 400 Bad Request" and "server" not in headers
    assert headers["strict-transport-security"] == HSTS and headers["connection"] == "close"
    assert b"email" not in d.to_client()
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(400, "bad_request")
    assert f.request.method == "-" and f.request.path == "-" and f.client_conn is d.client
    assert d.client in d.closed


def test_a_head_with_invalid_framing_is_reported_with_what_was_parsed(driver):
    d = driver()
    d.send(b"POST /form HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: foo\r\n\r\n")
    (f,) = d.errors()
    assert f.request.path == "/form" and flowview.error_answer(f).status == 400
    assert [h.name for h in d.hooks] == ["error"]  # never classified, never forwarded
    assert d.server is None


def test_request_validation_failures_are_bad_requests(driver):
    d = driver()
    d.send(b"GET /a HTTP/1.1\r\nHost: shop.example\r\nBad Name: x\r\n\r\n")  # mitmproxy's validate_headers
    status, headers = head_of(d.to_client())
    assert status == "HTTP/1.1 400 Bad Request" and "server" not in headers
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(400, "bad_request")


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nX: " + b"a" * 5000 + b"\r\n\r\n",  # complete, too large
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nX: " + b"a" * 5000,  # unfinished, too large
])
def test_request_heads_over_the_limit_are_431(driver, head):
    d = driver()
    d.send(head)
    assert d.to_client().startswith(b"HTTP/1.1 431 ")
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(431, "head_too_large")
    d.send(b"a" * 100_000)
    assert len(d.layer.connections[d.client].buf) < 10_000  # nothing more is kept


def test_a_head_not_finished_in_time_is_408_and_a_silent_connection_is_closed(driver):
    d = driver()
    (first,) = d.wakeups  # from the connection's start
    assert first.delay == 30.0
    d.send(b"GET / HTTP/1.1\r\nHost: sh")
    d.feed(events.Wakeup(first))
    assert d.to_client().startswith(b"HTTP/1.1 408 ")
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(408, "head_timeout")

    silent = driver()
    silent.feed(events.Wakeup(silent.wakeups[0]))
    assert silent.to_client() == b"" and silent.client in silent.closed and silent.errors() == []


def test_a_head_timer_is_per_head(driver):
    d = driver()
    d.send(b"GET /1 HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    d.origin_says(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    d.send(b"GET /2 HTTP/1.1\r\nHo")  # the next head starts: a timer of its own
    assert len(d.wakeups) == 2
    d.feed(events.Wakeup(d.wakeups[0]))  # the first head's timer is stale
    assert b"408" not in d.to_client()
    d.send(b"st: shop.example\r\n\r\n")
    assert b"GET /2 " in d.to_origin()


def test_request_trailers_are_400_not_a_crash(driver):
    d = driver(on_hook=lambda h: setattr(h.flow.request, "stream", True) if h.name == "requestheaders" else None)
    d.send(b"POST /up HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n")
    d.send(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")
    status, headers = head_of(d.to_client())
    assert status == "HTTP/1.1 400 Bad Request" and "server" not in headers
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(400, "bad_request")
    assert d.server in d.closed and b"abc" in d.to_origin()  # cut off at the origin while streaming...
    assert not d.to_origin().endswith(b"0\r\n\r\n")  # ...never completed


def test_a_broken_chunked_body_is_400(driver):
    d = driver()
    d.send(b"POST /up HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    assert d.to_client().startswith(b"HTTP/1.1 400 ")
    assert flowview.error_answer(d.errors()[0]).outcome == "bad_request"


def test_a_client_leaving_mid_body_is_not_an_upstream_error(driver):
    d = driver()
    d.send(b"POST /up HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 10\r\n\r\nabc")
    d.feed(events.ConnectionClosed(d.client))
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(499, "client_closed")
    assert d.to_client() == b""


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_buffered_body_over_its_limit_is_413_before_the_rest_is_read(guarded, driver, framing):
    guarded.body = 100  # what LayerSettings.body_limit says for this flow's rules
    d = driver()
    if framing == "chunked":
        d.send(b"POST /g/collect HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n")
        d.send(b"40\r\n" + b"a" * 64 + b"\r\n")
        assert d.to_client() == b""  # 64 bytes: within the limit
        d.send(b"40\r\n" + b"a" * 64 + b"\r\n")  # 128: over it
    else:
        d.send(b"POST /g/collect HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10)
    status, headers = head_of(d.to_client())
    assert status == "HTTP/1.1 413 Payload Too Large" and headers["strict-transport-security"] == HSTS
    assert d.client in d.closed and d.server is None
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(413, "too_large")


def test_a_body_of_an_answered_request_is_not_kept(driver):
    def hook(h):
        if h.name == "requestheaders":
            h.flow.response = http.Response.make(308, b"", {"location": "https://shop.example/"})

    d = driver(on_hook=hook, )
    d.send(b"POST /form HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 500\r\n\r\n" + b"a" * 500)
    assert d.to_client().startswith(b"HTTP/1.1 308 ")
    (request_hook,) = [h for h in d.hooks if h.name == "request"]
    assert request_hook.flow.request.raw_content == b""


def test_mitmproxys_own_502_becomes_privproxys_answer(guarded, driver):
    d = driver(connect_error="Connect call failed ('127.0.0.1', 8080)")
    d.send(b"GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    status, headers = head_of(d.to_client())
    assert status == "HTTP/1.1 502 Bad Gateway"
    assert "server" not in headers and headers["strict-transport-security"] == HSTS
    assert b"8080" not in d.to_client() and b"mitmproxy" not in d.to_client()
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(502, "upstream_error")


def test_an_origin_failing_mid_stream_keeps_the_status_already_sent(driver):
    def hook(h):
        if h.name == "responseheaders":
            h.flow.response.stream = True

    d = driver(on_hook=hook)
    d.send(b"GET /big HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    d.origin_says(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    d.feed(events.ConnectionClosed(d.server))
    (f,) = d.errors()
    assert flowview.error_answer(f) == flowview.ErrorAnswer(200, "upstream_error")
    assert d.to_client().count(b"HTTP/1.1") == 1


def _answered_origin(d: Driver) -> None:
    d.send(b"GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    d.origin_says(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    d.send(b"POST /b HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\n\r\nabc")  # the same connection
    d.origin_says(b"HTTP/1.1 204 No Content\r\n\r\n")


def _answered_by_an_addon(d: Driver) -> None:
    d.on_hook = lambda h: setattr(h.flow, "response", http.Response.make(204)) if h.name == "request" else None
    d.send(b"GET /g/collect?v=2 HTTP/1.1\r\nHost: shop.example\r\n\r\n")


def _origin_down(d: Driver) -> None:
    d.connect_error = "Connect call failed"
    d.send(b"GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\n")


def _origin_fails_mid_body(d: Driver) -> None:
    d.on_hook = lambda h: setattr(h.flow.response, "stream", True) if h.name == "responseheaders" else None
    d.send(b"GET /big HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    d.origin_says(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    d.feed(events.ConnectionClosed(d.server))


def _body_too_large(d: Driver) -> None:
    d.send(b"POST /g/collect HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10)


def _client_leaves_mid_body(d: Driver) -> None:
    d.send(b"POST /up HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 10\r\n\r\nabc")
    d.feed(events.ConnectionClosed(d.client))


@pytest.mark.parametrize("scenario", [_answered_origin, _answered_by_an_addon, _origin_down, _origin_fails_mid_body,
                                      _body_too_large, _client_leaves_mid_body], ids=lambda f: f.__name__[1:])
def test_an_ended_stream_and_its_flow_are_freed_without_the_cycle_collector(guarded, driver, scenario,
                                                                           unchecked_messages):
    """mitmproxy's stream is in two reference cycles (its Context lists it among its layers, its states are its own
    bound methods), which left every request's flow to the cyclic collector (5 % of a beacon's CPU): once the HTTP
    layer drops the stream, GuardedHttpStream._end unlinks it and reference counting frees it all."""
    guarded.body = 100
    d = driver()
    with collector_off():
        d.on_hook = lambda h: None
        scenario(d)  # sets its own on_hook first where it needs one; the references are taken below
        streams = {id(h.blocking): weakref.ref(h.blocking) for h in d.hooks}
        flows = {id(h.flow): weakref.ref(h.flow) for h in d.hooks}
        assert all(isinstance(r(), internals.GuardedHttpStream) for r in streams.values())
        assert d.hooks and not d.layer.streams  # every stream ended
        d.hooks.clear()  # the driver's own references
        assert [r() for r in [*streams.values(), *flows.values()]] == [None] * (len(streams) + len(flows))


def test_an_ended_stream_swallows_whatever_still_reaches_it(driver):
    d = driver()
    _answered_origin(d)
    (stream, *_) = {id(h.blocking): h.blocking for h in d.hooks}.values()
    f = stream.flow
    answered, hooks = d.to_client(), len(d.hooks)
    for event in (ResponseProtocolError(stream.stream_id, "late", ErrorCode.GENERIC_SERVER_ERROR),
                  RequestProtocolError(stream.stream_id, "late", ErrorCode.CLIENT_DISCONNECTED),
                  events.DataReceived(d.client, b"GET / HTTP/1.1\r\n\r\n")):
        assert list(stream.handle_event(event)) == []
    assert f.error is None and flowview.error_answer(f) is None and f.response.status_code == 200
    assert d.to_client() == answered and len(d.hooks) == hooks


_NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"X-\xc3\x9f", b"x-\xc3\x9f",
                          b"X-\xe1\xba\x9e", b"Set-Cookie", b"\xff", b""])
_LOOKUPS = st.one_of(_NAMES, _NAMES.map(lambda b: b.decode("utf-8", "surrogateescape")),
                     st.text(max_size=6), st.binary(max_size=6), st.sampled_from([None, 3, ("host",)]))


def _answer(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - the kind of error is part of the answer compared
        return ("error", type(e))


@settings(max_examples=400, deadline=None)
@given(fields=st.lists(st.tuples(_NAMES, st.binary(max_size=8)), max_size=6), name=_LOOKUPS)
def test_faster_header_lookups_answer_as_mitmproxys(fields, name):
    h = http.Headers(fields)
    asks = {"get_all": lambda: h.get_all(name), "getitem": lambda: h[name], "contains": lambda: name in h,
            "get": lambda: h.get(name), "get default": lambda: h.get(name, "-")}
    stock = {k: _answer(f) for k, f in asks.items()}
    internals.faster_header_lookups()
    try:
        fast = {k: _answer(f) for k, f in asks.items()}
    finally:
        internals.faster_header_lookups(False)
    assert fast == stock


def test_faster_header_lookups_replace_only_what_mitmproxy_defines_that_way():
    # Headers: bytes fields, case-insensitive by bytes.lower(), values folded with ", ", decoded surrogateescape
    assert inspect.getsource(http.Headers._kconv).strip().endswith("return key.lower()")
    assert 'return ", ".join(values)' in inspect.getsource(http.Headers._reduce_values)
    assert "_native(x) for x in super().get_all(name)" in inspect.getsource(http.Headers.get_all)
    assert {"__getitem__", "__contains__", "get"}.isdisjoint(vars(http.Headers))  # inherited from the MultiDict
    internals.faster_header_lookups()
    try:
        assert http.Headers.get_all is internals._get_all
    finally:
        internals.faster_header_lookups(False)
    assert "_native(x)" in inspect.getsource(http.Headers.get_all) and "get" not in vars(http.Headers)


def test_faster_option_reads_give_what_mitmproxy_gives_and_still_copy_containers():
    from mitmproxy import optmanager

    assert inspect.getsource(optmanager._Option.current).strip().endswith("return copy.deepcopy(v)")
    assert "return copy.deepcopy(self._default)" in inspect.getsource(optmanager._Option.default.fget)
    opts = options.Options()
    names = sorted(opts.keys())
    stock = {name: getattr(opts, name) for name in names}
    internals.faster_option_reads()
    try:
        fast = {name: getattr(opts, name) for name in names}
        assert fast == stock and {type(v) for v in fast.values()} >= {str, bool, int}
        opts.update(mode=["reverse:http://127.0.0.1:1"], ssl_insecure=True, listen_host="127.0.0.1")
        assert (opts.ssl_insecure, opts.listen_host) == (True, "127.0.0.1")
        modes = opts.mode
        modes.append("regular")  # a list is still a copy: changing it changes no option
        assert opts.mode == ["reverse:http://127.0.0.1:1"]
        assert opts.mode is not opts.mode
    finally:
        internals.faster_option_reads(False)
    assert optmanager._Option.current is internals._stock_option_current


def test_faster_ids_are_uuid4_text_from_the_same_source_and_what_mitmproxy_uses_them_for():
    import uuid

    from mitmproxy import connection as mconnection, flow as mflow

    # mitmproxy makes ids as str(uuid.uuid4()) in these two modules, and uses their `uuid` for nothing else
    for module in (mflow, mconnection):
        uses = re.findall(r"\buuid\.\w+(?:\(\))?", inspect.getsource(module))
        assert set(uses) == {"uuid.uuid4()"}, (module.__name__, uses)
    internals.faster_ids()
    try:
        ids = [tflow.tflow().id for _ in range(300)] + [mconnection.Server(address=None).id for _ in range(300)]
        ids += [internals._RANDOM_IDS.uuid4() for _ in range(20_000)]  # across many refills of the buffer
    finally:
        internals.faster_ids(False)
    assert len(set(ids)) == len(ids)
    for text in ids:
        u = uuid.UUID(text)
        assert (str(u), u.version, u.variant) == (text, 4, uuid.RFC_4122)
    # every hex digit in every random position: nothing fixed but the version and the variant's two bits
    assert {t[0] for t in ids} == set("0123456789abcdef") and {t[19] for t in ids} == set("89ab")
    assert mflow.uuid is uuid and mconnection.uuid is uuid and len(str(tflow.tflow().id)) == 36


def test_faster_ids_forget_their_buffer_in_a_forked_child():
    # in a process of its own: forking this multi-threaded test process is unsafe
    script = """
import os
from privproxy.mitm import internals
gen = internals._RandomIds()
gen.uuid4()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, gen.uuid4().encode())
    os._exit(0)
os.waitpid(pid, 0)
child = os.read(read, 64).decode()
print(child != gen.uuid4() and len(child) == 36)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr


def test_lighter_context_forks_give_what_mitmproxys_fork_gives_without_a_server_to_throw_away():
    from mitmproxy import connection as mconnection
    from mitmproxy.proxy import context as proxy_context

    # what the replacement relies on: __init__ sets these four and nothing else, fork keeps the server and copies
    # the layers (a mitmproxy upgrade that adds state to Context fails here)
    init = inspect.getsource(proxy_context.Context.__init__)
    assert set(re.findall(r"self\.(\w+) =", init)) == {"client", "options", "server", "layers"}
    fork = inspect.getsource(internals._stock_context_fork)
    assert "ret.server = self.server" in fork and "ret.layers = self.layers.copy()" in fork
    ctx = proxy_context.Context(mconnection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2)),
                                options.Options())
    ctx.server = mconnection.Server(address=("example.com", 443))
    ctx.layers = ["a layer"]
    stock = ctx.fork()
    made = 0
    real_server = mconnection.Server

    def counting(*a, **kw):
        nonlocal made
        made += 1
        return real_server(*a, **kw)

    internals.lighter_context_forks()
    try:
        proxy_context.connection.Server = counting
        ours = ctx.fork()
    finally:
        proxy_context.connection.Server = real_server
        internals.lighter_context_forks(False)
    assert type(ours) is proxy_context.Context and vars(ours).keys() == vars(stock).keys()
    assert all(getattr(ours, k) is getattr(ctx, k) for k in ("client", "options", "server"))
    assert ours.layers == ctx.layers and ours.layers is not ctx.layers  # a copy, as mitmproxy's
    assert made == 0
    assert proxy_context.Context.fork is internals._stock_context_fork


def test_checked_once_per_class_refuses_what_mitmproxy_refuses_and_makes_the_same_objects():
    from mitmproxy.proxy import events as pevents

    # what mitmproxy's checks are: properties of the class only (an upgrade that checks the arguments fails here)
    hook_body = [line.strip() for line in inspect.getsource(internals._stock_hook_new).splitlines()[1:]]
    assert hook_body == ["if cls is Hook:", 'raise TypeError("Hook may not be instantiated directly.")',
                         "if not is_dataclass(cls):", 'raise TypeError("Subclass is not a dataclass.")',
                         "return super().__new__(cls)"]
    completed_body = [line.strip() for line in inspect.getsource(internals._stock_completed_new).splitlines()[1:]]
    assert completed_body == ["if cls is CommandCompleted:",
                              'raise TypeError("CommandCompleted may not be instantiated directly.")',
                              "assert is_dataclass(cls)", "return super().__new__(cls)"]

    class NotADataclass(hooks.Hook):
        name = "privproxy_test_not_a_dataclass"

    internals.checked_once_per_class()
    try:
        for _ in range(2):  # refused every time, never remembered
            with pytest.raises(TypeError, match="may not be instantiated directly"):
                hooks.Hook()
            with pytest.raises(TypeError, match="not a dataclass"):
                NotADataclass()
            with pytest.raises(TypeError, match="may not be instantiated directly"):
                pevents.CommandCompleted(None, None)
        f = tflow.tflow()
        made = [hooks.UpdateHook([f]) for _ in range(2)] + [http_layer.HttpRequestHook(f) for _ in range(2)]
        start = http_layer.HttpRequestHook(f)
        done = [pevents.HookCompleted(start, None) for _ in range(2)]
    finally:
        internals.checked_once_per_class(False)
    assert [h.args() for h in made] == [[[f]], [[f]], [f], [f]] and made[2] is not made[3]
    assert [(d.command, d.reply) for d in done] == [(start, None)] * 2
    assert hooks.UpdateHook in internals._MADE and NotADataclass not in internals._MADE
    with pytest.raises(TypeError, match="not a dataclass"):
        NotADataclass()  # mitmproxy's own again
    del hooks.all_hooks[NotADataclass.name]


def test_crl_path_once_per_certificate_authority(tmp_path):
    tc = tlsconfig.TlsConfig()
    with taddons.context(tc) as tctx:
        tctx.configure(tc, confdir=str(tmp_path))
        stock = internals._stock_crl_path(tc)
        internals.crl_path_once()
        try:
            assert tc.crl_path() == stock == f"/mitmproxy-{tc.certstore.default_ca.serial}.crl"
            tctx.configure(tc, confdir=str(tmp_path / "other"))  # another CA: another path
            assert tc.crl_path() == internals._stock_crl_path(tc) != stock
        finally:
            internals.crl_path_once(False)
    assert tlsconfig.TlsConfig.crl_path is internals._stock_crl_path
