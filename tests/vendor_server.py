"""Local stand-ins for analytics vendors: an HTTPS collector under a test CA that records what it gets, one that
never answers (tests of privproxy.gateway, unit and end to end; a vendor that is down: helpers.closed_port)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tests.certs import Authority
from tests.helpers import Origin


#: what a vendor answers a path it was not told about: a beacon's 204 with CORS, tracking cookies and its banner
VENDOR_ANSWER = (204, [("Access-Control-Allow-Origin", "https://localhost"),
                       ("Access-Control-Allow-Credentials", "true"),
                       ("Set-Cookie", "_ga=GA1.1.99887766.1700000000; Path=/; Max-Age=63072000"),
                       ("Set-Cookie", "vendor_pref=1; Path=/"),
                       ("Strict-Transport-Security", "max-age=1"), ("Alt-Svc", 'h3=":443"'),
                       ("Server", "vendor-stack/1.0")], b"")


class Vendor(Origin):
    """A real HTTPS server on 127.0.0.1 with a certificate for `localhost` from `authority`: records each request
    (and the SNI it was reached by), answers as told per path."""

    def __init__(self, authority: Authority, tmp: Path,
                 responses: dict[str, tuple[int, list[tuple[str, str]], bytes]] | None = None) -> None:
        self.sni: list[str | None] = []
        issued = authority.issue("localhost")
        chain, key = tmp / "vendor-chain.pem", tmp / "vendor-key.pem"
        issued.write(chain, key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(chain, key)
        ctx.sni_callback = lambda sock, name, _ctx: self.sni.append(name)
        super().__init__(responses, default=VENDOR_ANSWER, tls=ctx)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


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


