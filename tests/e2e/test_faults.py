"""Faults, end to end with the real proxy: the origin down or resetting, the log file unable to grow, SIGTERM
under load. The proxy answers cleanly, keeps serving, counts what failed, and never puts an identifier in an
error page or a log (C2, C3, C15; 001 §9.2.1, §9.2.2; 000 §3)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from privproxy.mitm import drain
from tests.helpers import CLIENT_IP, closed_port, privproxy_exe, request, start_proxy, tls_context

SECRET_PATH = "/account?email=jane.doe%40example.com&uid=member-4711"


def metrics_text(p) -> str:
    return urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()


def assert_clean_error(p, r) -> None:
    assert r.status == 502
    # the proxy's own answer: no banner, no error text (it named the origin), HSTS as on every HTTPS answer
    assert r.header("server") is None and "max-age=" in (r.header("strict-transport-security") or "")
    body = r.body.decode(errors="replace")
    assert "mitmproxy" not in body and "127.0.0.1" not in body
    for secret in ("jane.doe", "member-4711", CLIENT_IP):
        assert secret not in body, secret
    (record,) = p.log_records(wait_for=1)
    assert record["status"] == 502 and record["outcome"] == "upstream_error"
    assert record["path"].startswith("/account?") and "jane.doe" not in record["path"]
    assert "member-4711" not in record["path"] and record["client"] == "127.9.8.0"


def test_upstream_down_is_a_clean_502(tmp_path):
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{closed_port()}", metrics=True)  # nothing listens there
    try:
        r = request(p.port, SECRET_PATH, tls=tls_context(p.ca))
        assert_clean_error(p, r)
        assert 'privproxy_requests_total{outcome="upstream_error",scheme="https",site="default"} 1.0' in metrics_text(p)
    finally:
        p.stop()
    assert "jane.doe" not in p.stderr() and CLIENT_IP not in p.stderr()


def test_upstream_resetting_connections_is_a_clean_502(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def reset_everything():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.recv(65536)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            c.close()

    t = threading.Thread(target=reset_everything, daemon=True)
    t.start()
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{srv.getsockname()[1]}")
    try:
        assert_clean_error(p, request(p.port, SECRET_PATH, tls=tls_context(p.ca)))
    finally:
        p.stop()
        stop.set()
        t.join(5)
        srv.close()


def test_an_origin_too_slow_to_answer_is_given_up_on_with_a_clean_504(tmp_path):
    origin = SlowOrigin(delay=6)
    p = start_proxy(tmp_path / "p", origin.url, "--upstream-timeout", "0.5", metrics=True)
    ctx = tls_context(p.ca)
    try:
        slow = request(p.port, "/slow" + SECRET_PATH, tls=ctx)  # the client's own timeout is 10 s
        fast = request(p.port, "/fast", tls=ctx)
        m = metrics_text(p)
    finally:
        p.stop()
        origin.close()
    assert slow.status == 504 and fast.status == 200  # and the proxy keeps serving
    assert "max-age" in (slow.header("strict-transport-security") or "")  # the proxy's own answer, hooks and all
    body = slow.body.decode(errors="replace")
    assert "jane.doe" not in body and "member-4711" not in body and CLIENT_IP not in body
    slow_record, fast_record = p.log_records(wait_for=2)
    assert slow_record["status"] == 504 and slow_record["outcome"] == "upstream_timeout"
    assert "jane.doe" not in slow_record["path"] and fast_record["outcome"] == "forwarded"
    assert 'privproxy_requests_total{outcome="upstream_timeout",scheme="https",site="default"} 1.0' in m
    assert "jane.doe" not in p.stderr() and CLIENT_IP not in p.stderr()


def test_a_client_leaving_mid_request_is_recorded_as_such_not_as_an_upstream_error(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, metrics=True)
    try:
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=5, source_address=(CLIENT_IP, 0))
        with tls_context(p.ca).wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"POST /upload?uid=member-4711 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
                      b"only part of it")
            time.sleep(0.3)
        (record,) = p.log_records(wait_for=1)
        m = metrics_text(p)
    finally:
        p.stop()
    assert record["status"] == 499 and record["outcome"] == "client_closed"
    assert "member-4711" not in record["path"] and record["client"] == "127.9.8.0"
    assert 'privproxy_requests_total{outcome="client_closed",scheme="https",site="default"} 1.0' in m
    assert 'privproxy_requests_total{outcome="upstream_error",scheme="https",site="default"} 1.0' not in m


# Runs privproxy with a file-size limit of 4 KB (as a full disk would) and SIGXFSZ ignored, so writes past
# it fail with EFBIG instead of killing the process.
LIMITED = [sys.executable, "-c", "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); os.execv(sys.argv[1], sys.argv[1:])"]


def test_a_log_that_cannot_grow_is_counted_and_the_proxy_keeps_serving(tmp_path, origin):
    exe = privproxy_exe()
    p = start_proxy(tmp_path / "p", origin.url, metrics=True, command=LIMITED + exe[:1] + exe[1:])
    ctx = tls_context(p.ca)
    try:
        statuses = [request(p.port, f"/page/{i}?email=jane{i}%40example.com", tls=ctx).status for i in range(60)]
        time.sleep(1.5)  # the once-a-second flush meets the limit
        statuses += [request(p.port, "/after", tls=ctx).status]
        m = metrics_text(p)
    finally:
        p.stop()
    assert statuses == [200] * 61  # every visitor was served
    written = (p.log_dir / "access.jsonl").read_text()
    assert 0 < len(written) <= 4096 and "jane" not in written
    errors = [line for line in m.splitlines()
              if line.startswith('privproxy_log_write_errors_total{') and 'stream="access"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in errors) >= 1, errors


BIG = 200_000  # an answer privproxy buffers whole (under its 256 KB limit), far more than the socket buffers hold


class SlowOrigin:
    """/slow answers after `delay` seconds, /big with BIG bytes; everything else at once."""

    def __init__(self, delay: float = 0.8) -> None:
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/slow"):
                    time.sleep(delay)
                body = b"b" * BIG if self.path.startswith("/big") else b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sigterm_under_load_finishes_in_flight_requests_and_logs_every_answer(tmp_path):
    origin = SlowOrigin()
    p = start_proxy(tmp_path / "p", origin.url)
    ctx = tls_context(p.ca)
    answered: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 20

    def load(i: int) -> None:
        n = 0
        while time.monotonic() < deadline and n < 400:  # bounded in time and count
            n += 1
            try:
                status = request(p.port, f"/load/{i}/{n}?uid=member-{i}", tls=ctx).status
            except OSError:
                return  # the proxy stopped listening: this client is done
            with lock:
                answered.append(status)

    slow_result: list[int] = []

    def slow() -> None:
        slow_result.append(request(p.port, "/slow?uid=member-slow", tls=ctx).status)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        s = threading.Thread(target=slow)
        s.start()
        time.sleep(0.3)  # /slow is now in flight at the origin
        p.proc.send_signal(signal.SIGTERM)
        s.join(10)
        for t in threads:
            t.join(30)
        code = p.proc.wait(20)
    finally:
        p.stop()
        origin.close()
    assert code == 0
    assert slow_result == [200]  # the request in flight at SIGTERM was answered
    records = [json.loads(line) for line in (p.log_dir / "access.jsonl").read_text().splitlines()]
    assert len(answered) > 10
    assert len(records) == len(answered) + 1  # every answer has its record (+ /slow)
    assert all(r["status"] == 200 and "member-" not in r["path"] for r in records)
    assert os.path.getsize(p.log_dir / "access.jsonl") > 0


def open_tls(port: int, ctx, receive_buffer: int = 0) -> http.client.HTTPSConnection:
    """A kept-alive HTTPS connection to the proxy, its TLS handshake done, no request sent yet."""
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    sock = socket.socket()
    if receive_buffer:  # a slow link: the proxy's answer waits in the proxy, not in the kernel
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    conn.sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return conn


def get(conn: http.client.HTTPSConnection, port: int, path: str) -> http.client.HTTPResponse:
    conn.request("GET", path, headers={"Host": f"localhost:{port}"})
    r = conn.getresponse()
    r.read()
    return r


def test_sigterm_serves_requests_on_open_connections_then_closes_them(tmp_path):
    """Connections open at SIGTERM with nothing in flight (a kept-alive one, one just past its TLS handshake) may
    still ask: they are answered, told `Connection: close`, and logged; idle ones are closed by the proxy, which
    then exits without waiting out the drain timeout."""
    origin = SlowOrigin()
    p = start_proxy(tmp_path / "p", origin.url, "--drain-timeout", "60")
    ctx = tls_context(p.ca)
    kept, fresh, idle = open_tls(p.port, ctx), open_tls(p.port, ctx), open_tls(p.port, ctx)
    try:
        first = get(kept, p.port, "/first?uid=member-1")
        assert first.status == 200 and (first.getheader("connection") or "").lower() != "close"
        p.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the drain has begun, and nothing is in flight
        after = [get(kept, p.port, "/kept?uid=member-1"), get(fresh, p.port, "/fresh?uid=member-2")]
        assert [r.status for r in after] == [200, 200]
        assert [r.getheader("connection") for r in after] == ["close", "close"]
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            get(kept, p.port, "/closed")  # http.client reconnects after a close: the proxy no longer listens
        code = p.proc.wait(30)  # well before the 60 s timeout: the proxy closed the idle connection
    finally:
        for c in (kept, fresh, idle):
            c.close()
        p.stop()
        origin.close()
    assert code == 0
    records = [json.loads(line) for line in (p.log_dir / "access.jsonl").read_text().splitlines()]
    assert sorted(r["path"].split("?")[0] for r in records) == ["/first", "/fresh", "/kept"]
    assert all(r["status"] == 200 and "member-" not in r["path"] for r in records)
    assert "still in flight" not in p.stderr()


def test_sigterm_waits_until_a_slow_reader_has_the_whole_answer(tmp_path):
    """An answer the proxy has logged but not yet sent (the visitor reads slowly) still arrives whole (what waits in
    the proxy process itself: tests/mitm/test_drain.py)."""
    origin = SlowOrigin()
    p = start_proxy(tmp_path / "p", origin.url, "--drain-timeout", "60")
    ctx = tls_context(p.ca)
    slow = open_tls(p.port, ctx, receive_buffer=4096)
    try:
        p.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        slow.request("GET", "/big?uid=member-1", headers={"Host": f"localhost:{p.port}"})
        time.sleep(2 * drain.IDLE_GRACE)  # not reading meanwhile: the answer waits in the proxy and the kernel
        r = slow.getresponse()
        body = b""
        while chunk := r.read(4096):
            body += chunk
            time.sleep(0.001)
        code = p.proc.wait(30)
    finally:
        slow.close()
        p.stop()
        origin.close()
    assert (r.status, len(body), r.getheader("connection")) == (200, BIG, "close") and code == 0
    (record,) = [json.loads(line) for line in (p.log_dir / "access.jsonl").read_text().splitlines()]
    assert record["status"] == 200 and "member-" not in record["path"]
    assert "still" not in p.stderr()
