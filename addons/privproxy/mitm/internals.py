"""Every mitmproxy internal privproxy relies on, each behind one named function (tests/mitm/test_internals.py
breaks when a mitmproxy upgrade changes what one of them relies on).

The HTTP layer is guarded here (C2, C3, C15): request heads are limited in size and time, refusals are answered
and recorded, the proxy's own error answers carry no banner and do carry HSTS, buffered bodies stop at their
limit, and nothing but a valid WebSocket handshake is ever upgraded (mitmproxy would relay any other 101 as raw
TCP: every later request on that connection would pass unlogged and unscrubbed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mitmproxy import addonmanager, certs, connection, ctx, flow as mflow, hooks, http, optmanager, tls
from mitmproxy.addons import proxyserver, tlsconfig
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1, status_codes
from mitmproxy.proxy import commands, context as proxy_context, events, mode_servers, server
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.utils import expect
from mitmproxy.proxy.layers.http._events import (
    ErrorCode, RequestData, RequestEndOfMessage, RequestHeaders, RequestProtocolError, ResponseData,
    ResponseEndOfMessage, ResponseHeaders, ResponseProtocolError, ResponseTrailers,
)
from mitmproxy.utils import asyncio_utils
from OpenSSL import SSL

from privproxy.mitm import flowview
from privproxy.mitm.flowview import ErrorAnswer
from privproxy.outcome import Outcome

# ---------------------------------------------------------------------------------------------------------------
# Hook dispatch, listeners, connections, tasks (used by dispatch, proxy_protocol, upstream_timeout, drain, cli.run)


def addon_hooks(manager: addonmanager.AddonManager, addon: object, event: hooks.Hook) -> list[Callable[..., Any]]:
    """The callables `addon` and its sub-addons have for `event`, in mitmproxy's own order."""
    return [func for _, func in manager._iter_hooks(addon, event)]


class InlineHookHandler(mode_servers.ProxyConnectionHandler):
    """mitmproxy's connection handler, with the hooks its addons finish at once run where the layer yields them.

    mitmproxy starts a task for every hook (named, time-stamped, an environment lookup), which the eager task
    factory runs at once; it then waits for the connection's event lock to give the layer its HookCompleted,
    after the event's other commands, one trip through the event loop later: 7 % of the proxy's instructions
    per beacon (bench/proxy_instructions.py), four hooks a request. Here the hook runs at the same point, and
    its HookCompleted goes to the layer right after the event's other commands, still under the lock: the same
    order, without the task.
    A hook that does not finish at once (an addon returned an awaitable, or a flow is intercepted) goes on in
    a task as in mitmproxy. Past IN_PLACE completions in one call (requests pipelined in one read, each
    answered by privproxy itself: a redirect, a refusal) the rest go through the lock in tasks as in mitmproxy,
    so one connection cannot hold the event loop for a whole buffer of requests. Needs an addon manager with
    `lifecycle_now` (dispatch.DirectAddonManager); with any other, every hook takes mitmproxy's way.

    One order differs, harmlessly: an event some hook handed to this connection through a task (waiting for the
    lock) now reaches the layer after the hook's HookCompleted, where mitmproxy's completion queued behind it.
    The paused layer queues such an event until the completion either way; no privproxy hook sends one."""

    IN_PLACE = 8  # a request answered here runs four hooks in one call; two such requests, then tasks

    async def server_event(self, event: events.Event) -> None:
        # mitmproxy.proxy.server.ConnectionHandler.server_event (12.3), with a queue of events in place of one
        # and StartHook run by _hook_now; tests/mitm/test_inline_hooks.py pins the original.
        async with self._server_event_lock:
            self.timeout_watchdog.register_activity()
            pending = collections.deque((event,))
            in_place = 0
            while pending:
                try:
                    for command in self.layer.handle_event(pending.popleft()):
                        if isinstance(command, commands.OpenConnection):
                            assert command.connection not in self.transports
                            handler = asyncio_utils.create_task(
                                self.open_connection(command),
                                name=f"server connection handler {command.connection.address}",
                                keep_ref=False, client=self.client.peername)
                            self.transports[command.connection] = server.ConnectionIO(handler=handler)
                        elif isinstance(command, commands.RequestWakeup):
                            task = asyncio_utils.create_task(
                                self.wakeup(command), name=f"wakeup timer ({command.delay:.1f}s)", keep_ref=False,
                                client=self.client.peername)
                            assert task is not None
                            self.wakeup_timer.add(task)
                        elif (isinstance(command, commands.ConnectionCommand)
                              and command.connection not in self.transports):
                            pass  # The connection has already been closed.
                        elif isinstance(command, commands.SendData):
                            writer = self.transports[command.connection].writer
                            assert writer
                            if not writer.is_closing():
                                writer.write(command.data)
                        elif isinstance(command, commands.CloseTcpConnection):
                            self.close_connection(command.connection, command.half_close)
                        elif isinstance(command, commands.CloseConnection):
                            self.close_connection(command.connection, False)
                        elif isinstance(command, commands.StartHook):
                            if self._hook_now(command) and command.blocking:
                                in_place += 1
                                if in_place <= self.IN_PLACE:
                                    pending.append(events.HookCompleted(command))
                                else:  # through the lock, behind whatever else waits for it
                                    asyncio_utils.create_task(
                                        self.server_event(events.HookCompleted(command)),
                                        name=f"handle_hook({command.name})", keep_ref=True,
                                        client=self.client.peername)
                        elif isinstance(command, commands.Log):
                            self.log(command.message, command.level)
                        else:
                            raise RuntimeError(f"Unexpected command: {command}")
                except Exception:  # noqa: BLE001 - mitmproxy's own handling, with the traceback
                    self.log("mitmproxy has crashed!", logging.ERROR, exc_info=True)

    def _hook_now(self, hook: commands.StartHook) -> bool:
        """True when the hook is over; False when a task finishes it (and hands the layer its HookCompleted)."""
        now = getattr(self.master.addons, "lifecycle_now", None)
        if now is None:
            later: Awaitable[None] = self.hook_task(hook)
        else:
            try:
                data, rest = now(hook)
            except Exception:  # noqa: BLE001 - as in mitmproxy's hook task: logged, and the hook never completes
                self.log(f"hook {hook.name} failed", logging.ERROR, exc_info=True)
                return False
            if rest is None and not (isinstance(data, mflow.Flow) and data.intercepted):
                return True
            later = self._finish_hook(hook, data, rest)
        asyncio_utils.create_task(later, name=f"handle_hook({hook.name})", keep_ref=True, client=self.client.peername)
        return False

    async def _finish_hook(self, hook: commands.StartHook, data: object, rest: Awaitable[None] | None) -> None:
        with self.timeout_watchdog.disarm():  # as mitmproxy's handle_hook
            if rest is not None:
                await rest
            if isinstance(data, mflow.Flow):
                await data.wait_for_resume()
        if hook.blocking:
            await self.server_event(events.HookCompleted(hook))


_connection_handler = mode_servers.ProxyConnectionHandler


def run_hooks_in_place(on: bool = True) -> None:
    """Connections accepted from now on get InlineHookHandler (on) or mitmproxy's own handler. Process-wide."""
    mode_servers.ProxyConnectionHandler = InlineHookHandler if on else _connection_handler  # type: ignore[misc]


_reverse_handle_stream = mode_servers.ReverseInstance.handle_stream
type Accept = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Any]]


def accept_reverse_connections(accept: Accept | None) -> None:
    """Reverse listeners started from now on give each TCP connection to `accept` before mitmproxy sees it:
    it returns the writer mitmproxy gets (e.g. `with_peer`), or None once it has closed the connection.
    None restores mitmproxy's own handling. Process-wide, like the listeners."""
    if accept is None:
        mode_servers.ReverseInstance.handle_stream = _reverse_handle_stream
        return

    async def handle_stream(self, reader, writer=None):
        if not isinstance(writer, asyncio.StreamWriter):
            return await _reverse_handle_stream(self, reader, writer)
        accepted = await accept(reader, writer)
        if accepted is not None:
            return await _reverse_handle_stream(self, reader, accepted)
        return None

    mode_servers.ReverseInstance.handle_stream = handle_stream


class _PeerWriter:
    """A connection's writer whose peer is another address: mitmproxy reads a client's address from its writer."""

    def __init__(self, writer: asyncio.StreamWriter, peer: tuple[str, int]) -> None:
        self._writer = writer
        self._peer = peer

    def get_extra_info(self, name: str, default=None):
        if name == "peername":
            return self._peer
        return self._writer.get_extra_info(name, default)

    def __getattr__(self, name: str):
        return getattr(self._writer, name)


def with_peer(writer: asyncio.StreamWriter, peer: tuple[str, int]) -> Any:
    return _PeerWriter(writer, peer)


def give_up_on_origin(flow: http.HTTPFlow, answer: bytes) -> bool:
    """Stop waiting for the origin of a live flow: an HTTP/1 origin connection is fed `answer` as if the origin
    had sent it (it then travels every response hook), any other is closed (mitmproxy answers 502).
    False when the connection is gone already."""
    try:
        handler = ctx.master.addons.get("proxyserver").connections[flow.client_conn.id]
        reader = handler.transports[flow.server_conn].handler
    except (AttributeError, KeyError):
        return False
    if reader is None:
        return False
    if flow.server_conn.alpn in (None, b"", b"http/1.1"):
        asyncio_utils.create_task(handler.server_event(events.DataReceived(flow.server_conn, answer)),
                                  name="privproxy answers for the origin", keep_ref=True)
    else:
        reader.cancel("privproxy gave up on the origin")
    return True


def listen_on(sockets: dict[tuple[str, int], list[socket.socket]]) -> None:
    """Reverse listeners on these (host, port) accept on the given sockets, bound and listening already (the
    supervisor's, inherited by a worker of `run --workers`), instead of binding their own. Process-wide."""
    own = mode_servers.ReverseInstance.listen

    async def listen(self, host: str, port: int):
        given = sockets.get((host, port))
        if not given or self.mode.transport_protocol != "tcp":
            return await own(self, host, port)
        return [await asyncio.start_server(self.handle_stream, sock=s) for s in given]

    mode_servers.ReverseInstance.listen = listen


async def stop_listening(master) -> None:
    """Close every listening socket; connections already accepted go on."""
    ps = master.addons.get("proxyserver")
    for instance in list(ps.servers) if ps else []:
        await instance.stop()


class ClientLink:
    """The drain's hold on one client connection, through mitmproxy's handler of it (ConnectionHandler, or
    InlineHookHandler): how long since its last event, what it has written that the kernel has not taken yet, and
    closing it."""

    __slots__ = ("_handler", "_client", "_transport")

    def __init__(self, handler, client) -> None:
        self._handler = handler
        self._client = client
        io = handler.transports.get(client)
        self._transport = io.writer.transport if io is not None and io.writer is not None else None

    def quiet(self) -> float:
        """Seconds since the connection's last event (data received, a hook completed): the clock mitmproxy's own
        idle timeout reads."""
        return time.time() - self._handler.timeout_watchdog.last_activity

    def unsent(self) -> int:
        """Bytes written to the connection and still in the process (lost if it exits now)."""
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def close(self) -> bool:
        """Close it as mitmproxy's idle timeout does (ConnectionHandler.on_timeout): cancel the task that reads
        it; the connection's layers then see it closed, what was written is still sent, the transport closes and
        `client_disconnected` runs. False when there is no reading task (yet, or any more)."""
        io = self._handler.transports.get(self._client)
        if io is None or io.handler is None or io.handler.done():
            return False
        io.handler.cancel("privproxy: idle while draining")
        return True


def client_link(master, client) -> ClientLink | None:
    """The link to one open client connection (mitmproxy's proxyserver keys its handlers by the client's id)."""
    ps = master.addons.get("proxyserver")
    handler = ps.connections.get(client.id) if ps is not None else None
    return ClientLink(handler, client) if handler is not None and handler.client is client else None


def retire_errorcheck(master) -> None:
    """Take mitmproxy's startup error check out of the chain (it only watches startup; every hook pays for it)."""
    ec = master.addons.get("errorcheck")
    if ec is not None:
        ec.finish()  # its log handler (idempotent: the Master may have removed it already)
        master.addons.remove(ec)


def eager_tasks_for_uvloop() -> None:
    """mitmproxy's Master installs asyncio.eager_task_factory, whose signature (Python 3.13) lacks the
    `eager_start` argument uvloop passes to task factories; wrap it so the same eager tasks run under uvloop."""

    def factory(loop, coro, *, eager_start=None, **kwargs):
        return asyncio.eager_task_factory(loop, coro, **kwargs)

    @contextlib.contextmanager
    def set_eager_task_factory():
        loop = asyncio.get_running_loop()
        existing = loop.get_task_factory()
        loop.set_task_factory(factory)
        try:
            yield
        finally:
            loop.set_task_factory(existing)

    asyncio_utils.set_eager_task_factory = set_eager_task_factory


def _unchecked(self) -> None:
    pass


def skip_message_typecheck() -> None:
    """mitmproxy checks the type of every field of each request and response it builds (MessageData's
    __post_init__), a development aid it leaves out under `python -O` (`if __debug__:`), which would also drop
    every assert. Leave out only the check: about 5 % of the proxy's CPU per request (py-spy, beacons)."""
    http.MessageData.__post_init__ = _unchecked  # type: ignore[method-assign]


_stock_headers = {name: vars(http.Headers).get(name) for name in ("get_all", "__getitem__", "__contains__", "get")}
_STOCK_GET_ALL = _stock_headers["get_all"]


def _header_key(name: object) -> bytes | None:
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape").lower()
    if isinstance(name, bytes):
        return name.lower()
    return None


def _get_all(self: http.Headers, name: str | bytes) -> list[str]:
    key = _header_key(name)
    if key is None:
        return _STOCK_GET_ALL(self, name)  # mitmproxy's error for a name that is not text
    return [v.decode("utf-8", "surrogateescape") for k, v in self.fields if k.lower() == key]


def _getitem(self: http.Headers, name: str | bytes) -> str:
    values = _get_all(self, name)
    if not values:
        raise KeyError(name)
    return ", ".join(values)


def _contains(self: http.Headers, name: object) -> bool:
    key = _header_key(name)
    if key is None:
        return Mapping.__contains__(self, name)
    for k, _ in self.fields:  # a loop, not any(genexpr): no generator per lookup
        if k.lower() == key:
            return True
    return False


def _get(self: http.Headers, name: str | bytes, default: Any = None) -> Any:
    values = _get_all(self, name)
    return ", ".join(values) if values else default


def faster_header_lookups(on: bool = True) -> None:
    """mitmproxy's Headers answer `get_all`, `[]`, `in` and `get` through five Python calls and a lower-casing
    call per field (MultiDict's generic key conversion): mitmproxy's HTTP/1 layer asks about 17 times per
    request, some 5 % of the proxy's CPU (perf, beacons). The same answers from one comprehension each;
    test_internals compares them with mitmproxy's on generated headers. Process-wide; off: mitmproxy's own."""
    fast = {"get_all": _get_all, "__getitem__": _getitem, "__contains__": _contains, "get": _get}
    for name, stock in _stock_headers.items():
        if on:
            setattr(http.Headers, name, fast[name])
        elif stock is not None:
            setattr(http.Headers, name, stock)
        elif name in vars(http.Headers):
            delattr(http.Headers, name)  # inherited from the MultiDict again


_ATOMIC_OPTION = frozenset({str, bytes, int, float, bool, type(None)})
_stock_option_current = optmanager._Option.current


def _option_current(self: optmanager._Option) -> Any:
    v = self._default if self.value is optmanager.unset else self.value
    return v if type(v) in _ATOMIC_OPTION else copy.deepcopy(v)


def faster_option_reads(on: bool = True) -> None:
    """mitmproxy hands out every option's value as a deep copy (twice for a default), read some 16 times per
    request by its HTTP layer: a string, number, bool or None is its own deep copy, so it is returned as it is
    (about 1 % of the instructions per request). Any other value is still copied. Process-wide; off: mitmproxy's
    own."""
    optmanager._Option.current = _option_current if on else _stock_option_current  # type: ignore[method-assign]


_stock_context_fork = proxy_context.Context.fork


def _context_fork(self: proxy_context.Context) -> proxy_context.Context:
    ret = object.__new__(proxy_context.Context)
    ret.client = self.client
    ret.options = self.options
    ret.server = self.server
    ret.layers = self.layers.copy()
    return ret


def lighter_context_forks(on: bool = True) -> None:
    """mitmproxy's Context.fork builds a new Context, whose __init__ makes a Server (an id, twenty attributes set
    through Connection.__setattr__) that fork at once replaces with its own: once per request, for the request's
    HTTP stream. Here the same four attributes are set without it (2.4 % of a beacon's instructions, callgrind).
    Process-wide; off: mitmproxy's own."""
    proxy_context.Context.fork = _context_fork if on else _stock_context_fork  # type: ignore[method-assign]


_stock_hook_new = hooks.Hook.__new__
_stock_completed_new = events.CommandCompleted.__new__
_MADE: set[type] = set()  # hook and completion classes whose first instance mitmproxy's own check let through


def _checked_once(stock: Callable[..., Any]) -> Callable[..., Any]:
    def new(cls, *args, **kwargs):
        if cls in _MADE:
            return object.__new__(cls)
        made = stock(cls, *args, **kwargs)
        _MADE.add(cls)
        return made
    return new


_hook_new = _checked_once(_stock_hook_new)
_completed_new = _checked_once(_stock_completed_new)


def checked_once_per_class(on: bool = True) -> None:
    """mitmproxy checks on every hook and every command completion it makes (nine a request) that the class may
    be instantiated (not the abstract base, a dataclass): a property of the class, so here it is checked on its
    first instance and remembered. Process-wide; off: mitmproxy's own."""
    hooks.Hook.__new__ = _hook_new if on else _stock_hook_new  # type: ignore[method-assign]
    events.CommandCompleted.__new__ = _completed_new if on else _stock_completed_new  # type: ignore[method-assign]


_stock_crl_path = tlsconfig.TlsConfig.crl_path


def _crl_path(self: tlsconfig.TlsConfig) -> str:
    ca = self.certstore.default_ca
    known = self.__dict__.get("_privproxy_crl_path")
    if known is None or known[0] is not ca:
        known = self.__dict__["_privproxy_crl_path"] = (ca, _stock_crl_path(self))
    return known[1]


def crl_path_once(on: bool = True) -> None:
    """mitmproxy's TlsConfig looks at every request's path for its CRL's, a path it formats from the CA
    certificate's serial number each time; here once per CA. Process-wide; off: mitmproxy's own."""
    tlsconfig.TlsConfig.crl_path = _crl_path if on else _stock_crl_path  # type: ignore[method-assign]


class _RandomIds:
    """Version-4 UUID text, as `str(uuid.uuid4())` gives it, from the same source (os.urandom) read 256 ids at a
    time: uuid4 makes a system call and a UUID object per id, and mitmproxy makes two ids per request (the flow,
    the server connection), 6.5 us each against 2.0 here (timeit). Random ids, not counted ones: a flow id is
    still unguessable. The buffer is dropped in a forked child, so two processes never hand out the same ids.
    Not locked: mitmproxy makes flows and connections on its event loop's thread only."""

    _BATCH = 16 * 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._at = b"", 0

    def uuid4(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(self._BATCH), 0
        self._at = at + 16
        h = self._pool[at:at + 16].hex()
        # RFC 9562 §5.4: version 4 in the 13th hex digit, the variant's two bits (10) at the top of the 17th
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_RANDOM_IDS = SimpleNamespace(uuid4=_RandomIds().uuid4)
_ID_MODULES = (mflow, connection)  # each makes its ids as str(uuid.uuid4()) and uses `uuid` for nothing else


def faster_ids(on: bool = True) -> None:
    """mitmproxy's flow and connection ids from _RandomIds (process-wide; off: the uuid module's)."""
    for module in _ID_MODULES:
        module.uuid = _RANDOM_IDS if on else uuid  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------------------
# Listen addresses and the operator's certificates (used by cli.run, certificates, log_redaction)


def reverse_mode(upstream: str, host: str, port: int) -> str:
    """The mode spec of a reverse listener on HOST:PORT. mitmproxy splits `@HOST:PORT` at its last colon and
    binds HOST as written, so an IPv6 address goes in bare (`@::1:8443`): `[::1]` would be looked up as a name."""
    return f"reverse:{upstream}@{host}:{port}"


def listener_message(record: logging.LogRecord) -> bool:
    """mitmproxy's records of its listeners ("reverse proxy to URL listening at HOST:PORT.", "... at HOST:PORT
    stopped.", "... failed to listen on HOST:PORT with [Errno 98] ..."): made of the operator's own settings
    only, never of anything a visitor sent."""
    msg = str(record.msg)
    if record.name == proxyserver.__name__:
        return record.levelno >= logging.ERROR and " failed to listen on " in msg
    return (record.name == mode_servers.__name__ and record.levelno == logging.INFO
            and (" listening at " in msg or msg.endswith(" stopped.")))


type PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
type Choose = Callable[[str | None], certs.CertStoreEntry | None]


def certificate_entry(cert: x509.Certificate, key: PrivateKey, intermediates: Sequence[x509.Certificate],
                      chain_file: Path | None) -> certs.CertStoreEntry:
    """A certificate as tlsconfig serves it. With a chain_file (a PEM of `intermediates`, written once per content:
    tlsconfig caches the SSL context by that path) OpenSSL sends the leaf and the chain it builds from the file;
    chain_certs (without the leaf) is what QUIC sends. tlsconfig sends chain_certs itself only when there is no
    chain_file and more than one of them, so a chain of one intermediate must come from the file."""
    return certs.CertStoreEntry(certs.Cert(cert), key, chain_file if intermediates else None,
                                [certs.Cert(c) for c in intermediates])


def choose_certificates(master, choose: Choose | None) -> bool:
    """tlsconfig asks `choose(sni)` first for the certificate of each TLS (and QUIC) handshake with a client; when
    it answers None, mitmproxy chooses as before (a certificate from its CA). `choose=None` restores mitmproxy's
    own choice. False when the Master has no tlsconfig addon."""
    tc = master.addons.get("tlsconfig")
    if tc is None:
        return False
    tc.__dict__.pop("get_cert", None)
    if choose is not None:
        mitmproxy_choice = tc.get_cert

        def get_cert(conn_context) -> certs.CertStoreEntry:
            return choose(conn_context.client.sni) or mitmproxy_choice(conn_context)

        tc.get_cert = get_cert
    return True


ACME_TLS_ALPN = b"acme-tls/1"  # RFC 8737


def acme_tls_alpn_sni(tls_start: tls.TlsData) -> str | None:
    """The name a client handshake asks for when it offers ALPN `acme-tls/1` (an ACME CA validating TLS-ALPN-01),
    else None. mitmproxy has read the ClientHello into the client connection before `tls_start_client`."""
    client = tls_start.conn
    if tls_start.is_dtls or not isinstance(client, connection.Client):
        return None
    return client.sni if ACME_TLS_ALPN in (client.alpn_offers or ()) else None


def answer_acme_tls_alpn(tls_start: tls.TlsData, cert: x509.Certificate, key: PrivateKey) -> None:
    """This handshake gets `cert` and negotiates `acme-tls/1` (RFC 8737 §3). A `tls_start_client` hook may set the
    TlsData's SSL connection, and mitmproxy's TLS layer handshakes with whatever is there after the hooks: this one
    replaces the one tlsconfig prepared (whose ALPN choice allows HTTP protocols only). The CA closes the connection
    after the handshake; mitmproxy's HTTP layer behind it reads nothing and forwards nothing."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate(cert)
    context.use_privatekey(key)

    def select(conn: SSL.Connection, offers: list[bytes]) -> bytes:
        return ACME_TLS_ALPN if ACME_TLS_ALPN in offers else SSL.NO_OVERLAPPING_PROTOCOLS

    context.set_alpn_select_callback(select)
    conn = SSL.Connection(context)
    conn.set_accept_state()
    tls_start.ssl_conn = conn


# ---------------------------------------------------------------------------------------------------------------
# The guarded HTTP layer


class LayerSettings(Protocol):
    """What the HTTP layer asks privproxy (mitm.options.LayerSettings)."""

    max_head: int  # bytes of request line and header fields
    head_timeout: float  # seconds from connection start, or from a head's first byte, to its end; 0: none

    def hsts(self, flow: http.HTTPFlow | None, tls: bool) -> str | None: ...

    def body_limit(self, flow: http.HTTPFlow) -> int | None: ...


class _Defaults:
    max_head = 64 * 1024
    head_timeout = 30.0

    def hsts(self, flow: http.HTTPFlow | None, tls: bool) -> str | None:
        return None

    def body_limit(self, flow: http.HTTPFlow) -> int | None:
        return None


_settings: LayerSettings = _Defaults()


def guard_http(settings: LayerSettings) -> None:
    """mitmproxy's HTTP layer, guarded, for every connection from now on (process-wide; idempotent)."""
    global _settings
    _settings = settings
    http_layer.Http1Server = GuardedHttp1Server  # type: ignore[misc]
    http_layer.HttpStream = GuardedHttpStream  # type: ignore[misc]


def own_answer(status: int, hsts: str | None = None, close: bool = True) -> http.Response:
    """The proxy's own error page: no Server banner, no detail (messages can name the origin), HSTS when the
    visitor came over HTTPS (RFC 6797 §7.1), and the connection closed after it on HTTP/1."""
    reason = status_codes.RESPONSES.get(status, "Error")
    body = f"<!doctype html><title>{status} {reason}</title><h1>{status} {reason}</h1>\n".encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
    if close:
        headers.append((b"connection", b"close"))
    if hsts:
        headers.append((b"strict-transport-security", hsts.encode()))
    return http.Response.make(status, body, headers)


# RFC 9110 §7.6.1: Connection names the hop-by-hop fields of this hop; these are the ones that start a tunnel.
_UPGRADE_FIELDS = frozenset({"upgrade", "http2-settings"})
_WS_KEY_LENGTH = 16  # RFC 6455 §4.1: base64 of a 16-byte nonce


def _tokens(values: Iterable[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def websocket_handshake(request: http.Request) -> bool:
    """A client opening handshake as RFC 6455 §4.1/§4.2.1 requires (version 13): the only upgrade passed."""
    h = request.headers
    if request.method != "GET" or request.http_version != "HTTP/1.1":
        return False
    if _tokens(h.get_all("upgrade")) != ["websocket"] or "upgrade" not in _tokens(h.get_all("connection")):
        return False
    if h.get_all("sec-websocket-version") != ["13"]:
        return False
    keys = h.get_all("sec-websocket-key")
    if len(keys) != 1 or len(keys[0].strip()) != 24:
        return False
    try:
        return len(base64.b64decode(keys[0].strip(), validate=True)) == _WS_KEY_LENGTH
    except (binascii.Error, ValueError):
        return False


def strip_upgrade(request: http.Request) -> None:
    """No tunnel requests: Upgrade (unless a valid WebSocket handshake) and HTTP2-Settings go, with the Connection
    tokens that name them, so an origin that speaks h2c or anything else is never asked to switch (RFC 9113 §3.1
    removed h2c; RFC 9110 §7.8)."""
    h = request.headers
    if "upgrade" not in h and "http2-settings" not in h:
        return
    strip = {"http2-settings"} if websocket_handshake(request) else set(_UPGRADE_FIELDS)
    for name in strip:
        h.pop(name, None)
    if "connection" in h:
        kept = [t for t in _tokens(h.get_all("connection")) if t not in strip]
        if kept:
            h["connection"] = ", ".join(kept)
        else:
            del h["connection"]


def _upgrade_allowed(request: http.Request, response: http.Response, websocket_on: bool) -> bool:
    """A 101 is relayed only for a valid WebSocket handshake that the origin accepted as WebSocket, which
    mitmproxy then relays frame by frame (never as raw TCP)."""
    return (websocket_on and websocket_handshake(request)
            and _tokens(response.headers.get_all("upgrade")) == ["websocket"])


def _placeholder_request() -> http.Request:
    """For a refused head that could not be parsed: method and target unknown."""
    return http.Request("", 0, b"-", b"", b"", b"-", b"HTTP/1.1", (), None, None, 0.0, None)


class GuardedHttp1Server(_http1.Http1Server):
    """mitmproxy's HTTP/1 server side with limits on the request head (431 past `max_head`, 408 past
    `head_timeout`), a 400 for request trailers and broken chunked bodies (mitmproxy crashes on trailers and closes
    silently on the rest), and privproxy's own answers for every refusal, each reported through the `error` hook
    so the access log has one record per refusal."""

    _head_timer: commands.RequestWakeup | None = None

    @expect(events.Start)
    def start(self, _) -> Iterator[commands.Command]:
        self.state = self.read_headers
        yield from self._arm_head_timer()  # from connection start: a client that never sends is cut off too

    state = start

    def _handle_event(self, event: events.Event):
        if isinstance(event, events.Wakeup):
            if event.command is self._head_timer and self.state == self.read_headers:
                yield from self._head_timeout()
            return
        if isinstance(event, events.DataReceived) and self.state == self.done:
            return  # refused or finished: nothing more is read or kept
        yield from super()._handle_event(event)
        if len(self.buf) > _settings.max_head and self.state != self.done:
            if self.state == self.read_body:  # a chunk-size line or trailer section that never ends
                yield from self._refuse_body("request body framing too long")
            elif self.state == self.wait:  # pipelined while the answer is pending: no more is buffered
                self.state = self.done
                yield commands.CloseConnection(self.conn)
                yield ReceiveHttp(RequestProtocolError(self.stream_id, "client sent too much ahead",
                                                       ErrorCode.CLIENT_DISCONNECTED))

    def _arm_head_timer(self) -> Iterator[commands.Command]:
        if _settings.head_timeout > 0:
            self._head_timer = commands.RequestWakeup(_settings.head_timeout)
            yield self._head_timer

    def read_headers(self, event: events.ConnectionEvent):
        if not isinstance(event, events.DataReceived):  # closed before a head ended: nothing to answer or log
            self.state = self.done
            yield commands.CloseConnection(self.conn)
            return
        for _ in range(8):  # RFC 9112 §2.2: empty lines before the request line are ignored (a few of them)
            head = self.buf.maybe_extract_lines()
            if head != []:
                break
        if head == []:
            yield from self._refuse_head(400, Outcome.BAD_REQUEST, "empty lines instead of a request")
            return
        if head is None:
            if len(self.buf) > _settings.max_head:
                yield from self._refuse_head(431, Outcome.HEAD_TOO_LARGE, "request head too large")
            elif self._head_timer is None:
                yield from self._arm_head_timer()
            return
        self._head_timer = None
        if sum(len(line) + 2 for line in head) > _settings.max_head:
            yield from self._refuse_head(431, Outcome.HEAD_TOO_LARGE, "request head too large")
            return
        self.request = None
        try:
            self.request = http1.read_request_head([bytes(x) for x in head])
            expected_body_size = http1.expected_http_body_size(self.request)
        except ValueError as e:
            yield from self._refuse_head(400, Outcome.BAD_REQUEST, str(e))
            return
        yield ReceiveHttp(RequestHeaders(self.stream_id, self.request, expected_body_size == 0))
        self.body_reader = _http1.make_body_reader(expected_body_size)
        self.state = self.read_body
        yield from self.state(event)

    def read_body(self, event: events.Event):
        # mitmproxy's read_body yields no blocking command, so its commands can be looked at before they go out.
        out: list[commands.Command] = []
        try:
            for command in super().read_body(event):
                out.append(command)
        except NotImplementedError:  # request trailers: "HTTP trailers are not implemented yet" (mitmproxy 12)
            out += [commands.CloseConnection(self.conn),
                    ReceiveHttp(RequestProtocolError(self.stream_id, "request trailers are not supported",
                                                     ErrorCode.GENERIC_CLIENT_ERROR))]
        failed = next((c for c in out if isinstance(c, ReceiveHttp) and isinstance(c.event, RequestProtocolError)),
                      None)
        if failed is None:
            yield from out
            return
        yield from (c for c in out[:out.index(failed)] if not isinstance(c, commands.CloseConnection))
        if isinstance(event, events.ConnectionClosed):  # the client went away mid-body: not a bad request
            self.state = self.done
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(RequestProtocolError(self.stream_id, "client disconnected mid-body",
                                                   ErrorCode.CLIENT_DISCONNECTED))
        else:
            assert isinstance(failed, ReceiveHttp)
            yield from self._refuse_body(failed.event.message)

    def _refuse_body(self, message: str):
        """A body that cannot be read as framed: 400 unless an answer has started, then the stream errs."""
        self.state = self.done
        if self.response is None:
            yield from self._answer(400)
        yield commands.CloseConnection(self.conn)
        yield ReceiveHttp(RequestProtocolError(self.stream_id, message, ErrorCode.GENERIC_CLIENT_ERROR))

    def _answer(self, status: int) -> Iterator[commands.Command]:
        if self.conn.state & ConnectionState.CAN_WRITE:
            hsts = _settings.hsts(None, bool(self.conn.tls_established))
            yield commands.SendData(self.conn, http1.assemble_response(own_answer(status, hsts)))

    def _head_timeout(self):
        if bytes(self.buf).strip():
            yield from self._refuse_head(408, Outcome.HEAD_TIMEOUT, "request head not complete in time")
        else:  # nothing sent: no request to answer or to log
            self.state = self.done
            yield commands.CloseConnection(self.conn)

    def _refuse_head(self, status: int, outcome: Outcome, message: str):
        """Answer and close; then the `error` hook sees a flow with what is known of the request (or `-`)."""
        self.state = self.done
        self._head_timer = None
        yield from self._answer(status)
        yield commands.CloseConnection(self.conn)
        f = http.HTTPFlow(self.context.client, self.context.server)
        f.request = self.request or _placeholder_request()
        f.error = mflow.Error(message)
        f.live = False
        flowview.context(f).answer = ErrorAnswer(status, outcome)
        yield http_layer.HttpErrorHook(f)


_CLIENT_ERRORS = {ErrorCode.REQUEST_TOO_LARGE: Outcome.TOO_LARGE}
_SERVER_EVENTS = (ResponseData, ResponseTrailers, ResponseEndOfMessage, ResponseProtocolError)


def _ended(event: events.Event) -> Iterator[commands.Command]:
    """What a stream that has ended does with an event: nothing (see GuardedHttpStream._end)."""
    return iter(())


class GuardedHttpStream(http_layer.HttpStream):
    """mitmproxy's per-request state machine, with: what caused an error noted for its record, mitmproxy's own
    error answers replaced by privproxy's, tunnel requests stripped, any 101 but WebSocket's refused with a 502,
    and buffered bodies held to their limit."""

    _drop_origin = False  # after a refused 101: whatever else the origin sends is not the visitor's

    def handle_event(self, event: events.Event):
        if isinstance(event, (RequestProtocolError, ResponseProtocolError)):
            if self._drop_origin and isinstance(event, ResponseProtocolError):
                return iter(())
            self._note(event)
        elif isinstance(event, RequestHeaders):
            strip_upgrade(event.request)  # before any hook: what the addons see is what is forwarded
        elif isinstance(event, _SERVER_EVENTS) and self._drop_origin:
            return iter(())
        elif isinstance(event, ResponseHeaders) and event.response.status_code == 101 \
                and not _upgrade_allowed(self.flow.request, event.response, self.context.options.websocket):
            return self._refuse_upgrade()
        return self._own_answers(super().handle_event(event))

    def _note(self, event: RequestProtocolError | ResponseProtocolError) -> None:
        f = getattr(self, "flow", None)
        if f is None or flowview.error_answer(f) is not None:
            return
        client = isinstance(event, RequestProtocolError)
        status = event.code.http_status_code()
        if self._head_sent() and f.response is not None:
            answer = ErrorAnswer(f.response.status_code, Outcome.CLIENT_CLOSED if client else Outcome.UPSTREAM_ERROR)
        elif client:
            answer = ErrorAnswer(status or 499, _CLIENT_ERRORS.get(event.code, Outcome.BAD_REQUEST if status
                                                                   else Outcome.CLIENT_CLOSED))
        else:
            answer = ErrorAnswer(502, Outcome.UPSTREAM_ERROR)
        flowview.context(f).answer = answer

    def _head_sent(self) -> bool:
        return self.server_state == self.state_stream_response_body or self.server_state == self.state_done

    def handle_protocol_error(self, event):
        self._note(event)  # also reached directly, without an event (the origin could not be connected)
        return super().handle_protocol_error(event)

    def check_invalid(self, request: bool):
        # mitmproxy's request/response validation (smuggling) answers 400/502 after an `error` hook of its own.
        c = flowview.context(self.flow)
        noted = c.answer is not None
        if not noted:
            c.answer = ErrorAnswer(400, Outcome.BAD_REQUEST) if request else ErrorAnswer(502, Outcome.UPSTREAM_ERROR)
        invalid = yield from super().check_invalid(request)
        if not invalid and not noted:
            c.answer = None
        return invalid

    def _own_answers(self, cmds: Iterable[commands.Command]) -> Iterator[commands.Command]:
        """mitmproxy answers its errors itself (make_error_response: `Server: mitmproxy <version>`, the error text,
        no HSTS); these go out as privproxy's own answer instead. A stream that mitmproxy dropped ends here."""
        dropped = False
        for command in cmds:
            if (isinstance(command, http_layer.SendHttp) and isinstance(command.event, ResponseProtocolError)
                    and command.connection is self.context.client):
                status = command.event.code.http_status_code()
                if status is not None and not self._head_sent():
                    yield from self._send_own_answer(status)
                    continue
            elif isinstance(command, http_layer.DropStream) and command.stream_id == self.stream_id:
                dropped = True
            yield command
        if dropped and self._paused is None:
            self._end()

    def _end(self) -> None:
        """Unlink the stream from itself once its HTTP layer has dropped it (the request is answered or failed):
        its Context lists it among its layers and its states are its own bound methods, two reference cycles that
        left every request's flow (some 70 objects: the flow, its messages, the addons' state) to the cyclic
        garbage collector, about 5 % of a beacon's CPU. Unlinked, reference counting frees them at once.
        mitmproxy routes nothing to a dropped stream; should anything still reach it, it is swallowed whole
        (handle_event, which also answers protocol errors, is replaced too: a plain function, no cycle).
        Streams mitmproxy never drops (a killed flow, a 101 without a protocol) are left to the collector."""
        self.client_state = self.server_state = _ended
        self.handle_event = _ended  # type: ignore[method-assign]
        try:
            self.context.layers.remove(self)
        except ValueError:
            pass

    def _send_own_answer(self, status: int) -> Iterator[commands.Command]:
        client = self.context.client
        http1_client = not (self.flow.request.is_http2 or self.flow.request.is_http3)
        resp = own_answer(status, _settings.hsts(self.flow, bool(client.tls_established)), close=http1_client)
        sid = self.stream_id
        yield http_layer.SendHttp(ResponseHeaders(sid, resp, end_stream=False), client)
        if self.flow.request.method != "HEAD":
            yield http_layer.SendHttp(ResponseData(sid, resp.raw_content or b""), client)
        yield http_layer.SendHttp(ResponseEndOfMessage(sid), client)
        if http1_client:
            yield commands.CloseConnection(client)

    def _refuse_upgrade(self) -> Iterator[commands.Command]:
        """An origin switched protocols for anything but a valid WebSocket handshake: its connection is closed
        (nothing after the 101 is relayed), the visitor gets a 502, and the record says upgrade_refused."""
        self._drop_origin = True
        flowview.set_outcome(self.flow, Outcome.UPGRADE_REFUSED)
        http1_client = not (self.flow.request.is_http2 or self.flow.request.is_http3)
        resp = own_answer(502, close=http1_client)  # HSTS is added by the responseheaders hook, as for any answer
        return itertools.chain(
            [commands.CloseConnection(self.context.server)],
            self._own_answers(super().handle_event(ResponseHeaders(self.stream_id, resp, end_stream=True))),
            self._own_answers(super().handle_event(ResponseEndOfMessage(self.stream_id))),
        )

    @expect(RequestData, http_layer.RequestTrailers, RequestEndOfMessage)
    def state_consume_request_body(self, event: events.Event):
        if isinstance(event, RequestData):
            limit = _settings.body_limit(self.flow)
            if limit is not None and (len(self.request_body_buf) + len(event.data) > limit
                                      or (flowview.declared_length(self.flow) or 0) > limit):
                yield from self._refuse_body(limit)
                return
            if self.flow.response is not None:
                return  # answered already (a redirect, a refusal): the body is read and dropped, not kept
        yield from super().state_consume_request_body(event)

    def _refuse_body(self, limit: int):
        self.request_body_buf.clear()
        flowview.context(self.flow).answer = ErrorAnswer(413, Outcome.TOO_LARGE)
        self.flow.error = mflow.Error(f"request body over {limit} bytes")
        self.flow.live = False
        self.client_state = self.state_errored
        self.server_state = self.state_errored
        yield http_layer.HttpErrorHook(self.flow)
        yield from self._send_own_answer(413)
        yield http_layer.DropStream(self.stream_id)

