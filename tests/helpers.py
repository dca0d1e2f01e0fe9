"""Test helpers shared by every layer: a recording origin, the real proxy process, HTTP(S) clients."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIENT_IP = "127.9.8.7"  # tests speak from another loopback address so truncation is visible: 127.9.8.0


_HELD: list[socket.socket] = []
_GIVEN: set[int] = set()  # free_port's ports so far


def closed_port() -> int:
    """A loopback port that refuses connections for the rest of the test run: bound and never listening, so no
    other socket (a proxy's own listener on port 0 included) can be given it, as a port from free_port can."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return s.getsockname()[1]


def free_port() -> int:
    """A loopback port nothing listens on right now, never one this process was given before: bind(0) may hand
    out a port again as soon as it is closed, and a test that asks for several (pebble's, its DNS's, the
    proxy's) would get two the same."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def read_until_closed(s: socket.socket, start: bytes = b"") -> bytes:
    """Everything the peer sends until it closes the connection (or the socket's timeout, or a reset)."""
    got = start
    try:
        while chunk := s.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


def privproxy_exe() -> list[str]:
    """The installed console script next to this interpreter, else `python -m privproxy`."""
    exe = Path(sys.executable).with_name("privproxy")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "privproxy"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes
    peer: str


class Origin:
    """A real HTTP server on 127.0.0.1 that records every request it receives and answers as told per path
    (else `default`); HTTPS when given a server-side `tls` context."""

    def __init__(self, responses: dict[str, tuple[int, list[tuple[str, str]], bytes]] | None = None, *,
                 default: tuple[int, list[tuple[str, str]], bytes] = (200, [], b"hello"),
                 tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        self.responses = responses or {}
        self.lock = threading.Lock()
        origin = self

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
                with origin.lock:
                    origin.requests.append(Recorded(self.command, self.path, headers, body, self.client_address[0]))
                status, extra, payload = origin.responses.get(self.path.split("?")[0], default)
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def last(self) -> Recorded:
        with self.lock:
            return self.requests[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Proxy:
    proc: subprocess.Popen[bytes]
    port: int
    confdir: Path
    log_dir: Path
    metrics: tuple[str, int] | None
    stderr_path: Path
    config: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def stop(self, timeout: float = 10) -> int:
        return stop_process(self.proc, timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_records(self, wait_for: int = 1, timeout: float = 5.0) -> list[dict]:
        """Records of access.jsonl, waiting (bounded) for the 1-second flush."""
        path = self.log_dir / "access.jsonl"
        deadline = time.monotonic() + timeout
        records: list[dict] = []
        while time.monotonic() < deadline:
            if path.exists():
                records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                if len(records) >= wait_for:
                    return records
            time.sleep(0.1)
        return records


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds: a process the test started, and only that one."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def start_proxy(tmp: Path, upstream: str, *args: str, config: Path | None = None, metrics: bool = False,
                command: list[str] | None = None, env: dict[str, str] | None = None, timeout: float = 20) -> Proxy:
    """Start the real `privproxy run` on 127.0.0.1:0 and wait for its ready file."""
    tmp.mkdir(parents=True, exist_ok=True)
    ready = tmp / "ready.json"
    confdir = tmp / "conf"
    log_dir = tmp / "logs"
    cmd = (command or privproxy_exe()) + [
        "run", "--upstream", upstream, "--listen", "127.0.0.1:0", "--confdir", str(confdir),
        "--log-dir", str(log_dir), "--ready-file", str(ready),
    ]
    if config is not None:
        cmd += ["--config", str(config)]
    if metrics:
        cmd += ["--metrics", "127.0.0.1:0"]
    cmd += list(args)
    stderr_path = tmp / "stderr.txt"
    full_env = {**os.environ, "PRIVPROXY_SECRET": "test-secret-0123456789", **(env or {})}
    proc = subprocess.Popen(cmd, stdout=open(tmp / "stdout.txt", "wb"), stderr=open(stderr_path, "wb"),
                            cwd=tmp, env=full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            doc = json.loads(ready.read_text())
            m = tuple(doc["metrics"]) if doc.get("metrics") else None
            return Proxy(proc, doc["listen"][0][1], confdir, log_dir, m, stderr_path, config)  # type: ignore[arg-type]
        if proc.poll() is not None:
            raise RuntimeError(f"privproxy exited with {proc.returncode}:\n{stderr_path.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"privproxy did not become ready:\n{stderr_path.read_text()}")


def tls_context(ca: Path | None = None, *, minimum: ssl.TLSVersion | None = None,
                maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
    if minimum is not None or maximum is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets OpenSSL 3 offer TLS 1.0/1.1 at all
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def request(port: int, path: str, *, tls: ssl.SSLContext | None = None, method: str = "GET",
            headers: dict[str, str] | None = None, body: bytes | None = None, source: str = CLIENT_IP,
            host: str = "localhost") -> Reply:
    """One request from `source` to the proxy on 127.0.0.1:port (TLS when a context is given)."""
    if tls is not None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, context=tls, timeout=10)
        conn.sock = tls.wrap_socket(sock, server_hostname=host)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        hdrs = {"Host": f"{host}:{port}", **(headers or {})}
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def metric(p: Proxy, name: str, **labels: str) -> float:
    """One sample of the proxy's /metrics (its --metrics listener), by name and labels."""
    text = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{want} not exported")


def http_status(url: str) -> int:
    """The status of a GET of `url` (an error status too), 0 while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0
