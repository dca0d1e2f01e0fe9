"""Hostile and unusual input against the real proxy: HTTP/2 clients, WebSocket upgrades, oversized headers,
invalid UTF-8 and percent-encoding, malformed cookies, deeply nested JSON and gzip bombs in beacons. The proxy
keeps answering, fails closed and logs nothing identifying (C2, C8, C15; 000 §3; 004 security measures)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import subprocess
import threading
import urllib.request

from tests.helpers import CLIENT_IP, request, start_proxy, tls_context
from tests.tools import require

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_http2_client_is_served_and_filtered(tmp_path, origin):
    curl = require("curl", "curl")
    p = start_proxy(tmp_path / "p", origin.url)
    try:
        r = subprocess.run([curl, "-s", "--http2", "--cacert", str(p.ca), "--interface", CLIENT_IP,
                            "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                            "-H", "X-Forwarded-For: 203.0.113.9", "-H", "Cookie: _ga=GA1.1.99887766.1700000000",
                            f"https://localhost:{p.port}/h2?email=jane%40example.com"],
                           capture_output=True, text=True, timeout=60)
        (record,) = p.log_records(wait_for=1)
    finally:
        p.stop()
    assert r.stdout == "2 200", r.stdout + r.stderr
    got = origin.last()
    assert got.headers["x-forwarded-for"] == ["127.9.8.0"] and "99887766" not in got.headers["cookie"][0]
    assert record["proto"] == "HTTP/2.0" and "jane" not in record["path"]


class WebSocketOrigin:
    """Answers the upgrade and echoes one text frame back."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        with c:
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            frame = c.recv(4096)
            n = frame[1] & 0x7F
            mask, payload = frame[2:6], frame[6:6 + n]
            text = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            c.sendall(bytes([0x81, len(text)]) + text)

    def close(self) -> None:
        self.sock.close()


def test_websocket_upgrade_passes_through(tmp_path):
    ws = WebSocketOrigin()
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{ws.port}")
    try:
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=10, source_address=(CLIENT_IP, 0))
        s = tls_context(p.ca).wrap_socket(raw, server_hostname="localhost")
        key = base64.b64encode(b"0123456789abcdef").decode()
        s.sendall(f"GET /chat?token=secret-ws HTTP/1.1\r\nHost: localhost:{p.port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        mask = b"\x01\x02\x03\x04"
        s.sendall(bytes([0x81, 0x80 | 5]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hello")))
        echo = s.recv(4096)
        s.close()
        records = p.log_records(wait_for=1)
    finally:
        p.stop()
        ws.close()
    assert echo[2:7] == b"hello"
    assert records and all("secret-ws" not in r["path"] for r in records)


def test_malformed_input_is_answered_and_logged_without_identifiers(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, metrics=True)
    ctx = tls_context(p.ca)
    statuses = []
    try:
        # an oversized header: refused by the HTTP layer, the proxy lives on
        try:
            statuses.append(request(p.port, "/big", tls=ctx, headers={"X-Big": "a" * 300_000}).status)
        except (OSError, ConnectionError):
            statuses.append(0)
        # invalid percent-encoding and UTF-8, and an email hidden in it
        statuses.append(request(p.port, "/p?q=%ff%fe%&email=jane%40example.com&x=%E3%81", tls=ctx).status)
        # malformed cookies and forwarding headers from an untrusted client
        statuses.append(request(p.port, "/c", tls=ctx, headers={
            "Cookie": ";;==; _ga=; =x; _ga; _fbp=fb.1.1700000000.1234567890;;", "X-Forwarded-For": "not, an, ip,,",
            "Forwarded": 'for="[::1;proto=', "X-Forwarded-Proto": "gopher"}).status)
        # a beacon of JSON nested 5,000 deep (the parser refuses it: bad_json), and a gzip bomb (too_large):
        # refused, not forwarded, counted
        deep = ("[" * 5000 + "]" * 5000).encode()
        statuses.append(request(p.port, "/v1/t", tls=ctx, method="POST", body=deep,
                                headers={"Content-Type": "application/json"}).status)
        bomb = gzip.compress(b'{"userId": "x", "pad": "' + b"a" * 20_000_000 + b'"}')
        statuses.append(request(p.port, "/v1/t", tls=ctx, method="POST", body=bomb,
                                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}).status)
        statuses.append(request(p.port, "/still-alive", tls=ctx).status)
        records = p.log_records(wait_for=5)
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    assert statuses[0] in (0, 400, 413, 431)  # never 200: the oversized header did not get through
    assert statuses[1:3] == [200, 200]
    assert statuses[3:5] == [204, 204]  # answered here without forwarding
    assert statuses[5] == 200
    assert not any(r.path.startswith("/v1/t") for r in origin.requests)
    text = json.dumps(records)
    assert "jane" not in text and "1234567890" not in text and CLIENT_IP not in text
    assert 'privproxy_beacon_failures_total{reason="bad_json",vendor="segment"} 1.0' in metrics
    assert 'privproxy_beacon_failures_total{reason="too_large",vendor="segment"} 1.0' in metrics
