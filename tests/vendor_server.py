"""Local stand-ins for analytics vendors: an HTTPS collector under a test CA that records what it gets, one that
never answers, and a port nothing listens on (tests of privproxy.gateway, unit and end to end)."""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.certs import Authority
from tests.helpers import Recorded


class Vendor:
    """A real HTTPS server on 127.0.0.1 with a certificate for `localhost` from `authority`: records each request
    (and the SNI it was reached by), answers as told per path."""

    def __init__(self, authority: Authority, tmp: Path,
                 responses: dict[str, tuple[int, list[tuple[str, str]], bytes]] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.sni: list[str | None] = []
        self.responses = responses or {}
        self.lock = threading.Lock()
        issued = authority.issue("localhost")
        chain, key = tmp / "vendor-chain.pem", tmp / "vendor-key.pem"
        issued.write(chain, key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(chain, key)
        ctx.sni_callback = lambda sock, name, _ctx: self.sni.append(name)
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, list[str]] = {}
                for k, v in self.headers.items():
                    headers.setdefault(k.lower(), []).append(v)
                with vendor.lock:
                    vendor.requests.append(Recorded(self.command, self.path, headers, body, self.client_address[0]))
                status, extra, payload = vendor.responses.get(self.path.split("?")[0], (
                    204, [("Access-Control-Allow-Origin", "https://localhost"),
                          ("Access-Control-Allow-Credentials", "true"),
                          ("Set-Cookie", "_ga=GA1.1.99887766.1700000000; Path=/; Max-Age=63072000"),
                          ("Set-Cookie", "vendor_pref=1; Path=/"),
                          ("Strict-Transport-Security", "max-age=1"), ("Alt-Svc", 'h3=":443"'),
                          ("Server", "vendor-stack/1.0")], b""))
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_OPTIONS = do_HEAD = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """Accepts connections and never answers (a hung collector)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
