"""The status port: /metrics for Prometheus, /healthz and /readyz for load balancers and Kubernetes probes.

It binds to loopback unless told otherwise (C15: metrics are not public) and never logs who asked.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # the default prints the peer's address to stderr
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _server_class(host: str, port: int) -> type[_Server]:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Bound(_Server):
        address_family = family

    return Bound


class StatusServer:
    """live() says the event loop still turns; ready() says this instance should get traffic. Both are
    (ok, reason) callables run on the server's thread, so they must only read plain attributes."""

    def __init__(self, registry: CollectorRegistry, live: Callable[[], tuple[bool, str]],
                 ready: Callable[[], tuple[bool, str]]) -> None:
        self.metrics_app = make_wsgi_app(registry)
        self.live, self.ready = live, ready
        self.server: WSGIServer | None = None
        self.thread: threading.Thread | None = None

    def app(self, environ, outer_start_response):
        def start_response(status, headers, exc_info=None):  # wsgiref would advertise its and Python's versions
            return outer_start_response(status, [*headers, ("Server", "privproxy")], exc_info)

        path = environ.get("PATH_INFO", "")
        if path in ("/metrics", "/"):
            return self.metrics_app(environ, start_response)
        check = {"/healthz": self.live, "/livez": self.live, "/readyz": self.ready}.get(path)
        if check is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics, /healthz, /readyz\n"]
        ok, reason = check()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
        return [(reason + "\n").encode()] if environ.get("REQUEST_METHOD") != "HEAD" else []

    def start(self, host: str, port: int) -> tuple[str, int]:
        self.server = make_server(host, port, self.app, _server_class(host, port), handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, name="privproxy-status", daemon=True)
        self.thread.start()
        return host, self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
