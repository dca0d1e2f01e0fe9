"""Hostile and unusual input against the real proxy: HTTP/2 clients, WebSocket upgrades, oversized headers,
invalid UTF-8 and percent-encoding, malformed cookies, deeply nested JSON and gzip bombs in beacons. The proxy
keeps answering, fails closed and logs nothing identifying (C2, C8, C15; 000 §3; 004 security measures)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import CLIENT_IP, REPO, read_until_closed, request, start_proxy, tls_context
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


class SwitchingOrigin:
    """An origin that switches protocols: to any Upgrade it is asked for (as hypercorn does for h2c), or, when
    `always`, to every request. Everything it reads after its 101 is kept in `raw`: what a tunnel would carry."""

    def __init__(self, always: bool = False) -> None:
        self.always = always
        self.heads: list[bytes] = []
        self.raw = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.connection, args=(c,), daemon=True).start()

    def connection(self, c: socket.socket) -> None:
        c.settimeout(5)
        buf = b""
        with c:
            for _ in range(20):  # requests on this connection, bounded
                try:
                    while b"\r\n\r\n" not in buf:
                        chunk = c.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                except OSError:
                    return
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.heads.append(head)
                asked = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
                         if line.lower().startswith(b"upgrade:")]
                if asked or self.always:
                    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + (asked or [b"foo"])[0]
                              + b"\r\nConnection: Upgrade\r\n\r\n")
                    self.raw += buf
                    try:
                        while chunk := c.recv(65536):
                            self.raw += chunk
                    except OSError:
                        pass
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def exchange(port: int, ctx, requests: list[bytes], source: str = CLIENT_IP) -> bytes:
    """Send each request on one TLS connection, reading what comes back after each (bounded); all of it."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    got = b""
    with s:
        for r in requests:
            try:
                s.sendall(r)
                s.settimeout(1.5)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return got
                    got += chunk
                    if got.endswith(b"ok") or got.endswith(b"</h1>\n"):
                        break
            except (OSError, ssl.SSLError):
                return got
    return got


UPGRADES = {
    "h2c": b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
    "foo": b"Connection: Upgrade\r\nUpgrade: foo\r\n",
    "websocket-8": b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
                   b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n",
}
SECOND = b"GET /second?uid=member-4711 HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.23\r\n\r\n"


@pytest.mark.parametrize("kind", sorted(UPGRADES))
def test_an_upgrade_is_never_asked_for_and_the_connection_stays_http(tmp_path, kind):
    origin = SwitchingOrigin()
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{origin.port}")
    try:
        first = b"GET /first HTTP/1.1\r\nHost: localhost\r\n" + UPGRADES[kind] + b"\r\n"
        got = exchange(p.port, tls_context(p.ca), [first, SECOND])
        records = p.log_records(wait_for=2)
    finally:
        p.stop()
        origin.close()
    assert got.count(b"HTTP/1.1 200 OK") == 2, got
    assert len(origin.heads) == 2 and origin.raw == b""
    for head in origin.heads:
        assert b"upgrade" not in head.lower() and b"http2-settings" not in head.lower()
    assert b"x-forwarded-for: 127.9.8.0" in origin.heads[1].lower()  # the second request was filtered too
    assert [r["path"].split("?")[0] for r in records] == ["/first", "/second"]
    assert all(r["status"] == 200 for r in records)


@pytest.mark.parametrize("kind", sorted(UPGRADES))
def test_an_origin_switching_protocols_anyway_ends_the_connection_with_a_502(tmp_path, kind):
    origin = SwitchingOrigin(always=True)
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{origin.port}")
    try:
        first = b"GET /first HTTP/1.1\r\nHost: localhost\r\n" + UPGRADES[kind] + b"\r\n"
        got = exchange(p.port, tls_context(p.ca), [first, SECOND])
        (record,) = p.log_records(wait_for=1)
        time.sleep(0.3)
    finally:
        p.stop()
        origin.close()
    status, _, rest = got.partition(b"\r\n")
    assert status == b"HTTP/1.1 502 Bad Gateway" and b"101" not in got
    assert b"strict-transport-security: max-age=" in rest.lower() and b"mitmproxy" not in got.lower()
    assert origin.raw == b"" and len(origin.heads) == 1  # nothing after the 101: no tunnel
    assert record["status"] == 502 and record["outcome"] == "upgrade_refused" and record["path"] == "/first"


def test_refused_requests_are_answered_without_banner_and_recorded(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, metrics=True)
    ctx = tls_context(p.ca)
    cases = [
        (b"GET /a?email=jane%40example.com HTTP/1.1 junk\r\nHost: localhost\r\n\r\n", 400, "bad_request"),
        (b"POST /form HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_request"),
        (b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3\r\nabc\r\n0\r\nX-Trailer: jane@example.com\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431, "head_too_large"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 300_000, 431, "head_too_large"),
    ]
    answers = []
    try:
        for data, _, _ in cases:
            answers.append(exchange(p.port, ctx, [data]))
        alive = request(p.port, "/still-alive", tls=ctx).status
        records = p.log_records(wait_for=len(cases) + 1)
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    assert alive == 200
    for got, (_, status, _) in zip(answers, cases, strict=True):
        assert got.startswith(f"HTTP/1.1 {status} ".encode()), got[:100]
        assert b"mitmproxy" not in got.lower() and b"strict-transport-security: max-age=" in got.lower()
    by_outcome = [(r["status"], r["outcome"]) for r in records[:-1]]
    assert sorted(by_outcome) == sorted((s, o) for _, s, o in cases)
    assert records[0]["method"] == "-" and records[0]["path"] == "-"
    assert all(r["client"] == "127.9.8.0" for r in records)
    assert "jane" not in json.dumps(records) and not any(r.path.startswith(("/a", "/form", "/up")) for r in
                                                          origin.requests)
    assert 'privproxy_requests_total{outcome="head_too_large",scheme="https",site="default"} 2.0' in metrics


def test_plain_http_that_does_not_look_like_http_is_not_tunnelled(tmp_path):
    origin = SwitchingOrigin()
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{origin.port}")
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=5, source_address=(CLIENT_IP, 0)) as s:
            s.sendall(b"X\r\nGET /tunnel?uid=member-4711 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            s.settimeout(3)
            got = read_until_closed(s)
    finally:
        p.stop()
        origin.close()
    assert origin.heads == [] and origin.raw == b""  # mitmproxy's raw TCP fallback would have relayed it
    assert got.startswith(b"HTTP/1.1 400 ")


def test_beacon_bodies_are_refused_as_they_pass_the_limit(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url)
    ctx = tls_context(p.ca)
    try:
        results = []
        for head in (b"POST /g/collect?v=2&tid=G-1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
                     b"POST /g/collect?v=2&tid=G-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50000000\r\n\r\n"):
            chunked = b"chunked" in head
            raw = socket.create_connection(("127.0.0.1", p.port), timeout=5, source_address=(CLIENT_IP, 0))
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(head)
                sent, answer = 0, b""
                s.settimeout(0.05)
                while sent < 4_000_000 and not answer:  # bounded: 8x the 512 KB limit at most
                    piece = b"a" * 16384
                    try:
                        s.sendall(b"4000\r\n" + piece + b"\r\n" if chunked else piece)
                        sent += len(piece)
                        answer = s.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                s.settimeout(3)
                answer = read_until_closed(s, answer)
            results.append((sent, answer))
        records = p.log_records(wait_for=2)
    finally:
        p.stop()
    for sent, answer in results:
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
        assert sent < 2_000_000  # answered near the limit, not after the whole body
    assert [(r["status"], r["outcome"]) for r in records] == [(413, "too_large")] * 2
    assert not any(r.path.startswith("/g/collect") for r in origin.requests)


def test_a_head_not_finished_in_time_is_answered_408_and_recorded(tmp_path, origin):
    # through mitmdump -s, where the head timeout can be set short: the timer crosses the TLS layer as in production
    ready, logs = tmp_path / "ready.json", tmp_path / "logs"
    mitmdump = Path(sys.executable).with_name("mitmdump")
    proc = subprocess.Popen([str(mitmdump), "-s", str(REPO / "addons" / "privproxy_mitmdump.py"),
                             "--mode", f"reverse:{origin.url}@127.0.0.1:0", "--set", f"confdir={tmp_path / 'conf'}",
                             "--set", f"privproxy_log_dir={logs}", "--set", f"privproxy_ready_file={ready}",
                             "--set", "privproxy_request_head_timeout=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "PRIVPROXY_SECRET": "s"})
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        port = json.loads(ready.read_text())["listen"][0][1]
        ctx = tls_context(tmp_path / "conf" / "mitmproxy-ca-cert.pem")
        t0 = time.monotonic()
        slow = exchange(port, ctx, [b"GET /slow?uid=member-4711 HTTP/1.1\r\nHost: local"])
        took = time.monotonic() - t0
        raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT_IP, 0))
        with ctx.wrap_socket(raw, server_hostname="localhost") as silent:
            silent.settimeout(4)
            closed = silent.recv(100) == b""  # a client that sends nothing is let go, without an answer
        time.sleep(1.5)
        records = [json.loads(line) for line in (logs / "access.jsonl").read_text().splitlines()]
    finally:
        proc.terminate()
        proc.wait(10)
    assert slow.startswith(b"HTTP/1.1 408 ") and took < 4
    assert closed
    assert [(r["status"], r["outcome"], r["client"]) for r in records] == [(408, "head_timeout", "127.9.8.0")]
    assert origin.requests == []
