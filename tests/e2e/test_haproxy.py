"""Several instances behind the shipped HAProxy configurations (deploy/haproxy/): HTTP mode with
X-Forwarded-For/-Proto and TLS passthrough with the PROXY protocol (C2, C8, C15; 001 §9.2.1; 000 §3; 004).

The client speaks from another loopback address (127.9.8.7); HAProxy connects to the instances from 127.0.0.1,
the only address they trust.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.certs import make_self_signed
from tests.helpers import CLIENT_IP, Proxy, REPO, free_port, privproxy_exe, request, start_proxy, tls_context
from tests.tools import require

SECRET = "haproxy-e2e-shared-secret-0123456789"
CONSENT_KEY = "haproxy-e2e-consent-key-0123456789abcdef"
GA4 = "/g/collect?v=2&tid=G-ABC123&cid=1234567890.1700000000&uid=member-7&sid=1700000001&en=page_view"


class HAProxy:
    """The repo's configuration with its example addresses swapped for this test's (each must be present)."""

    def __init__(self, tmp: Path, shipped: str, swaps: dict[str, str]) -> None:
        text = (REPO / "deploy" / "haproxy" / shipped).read_text()
        for old, new in swaps.items():
            assert old in text, f"{shipped} no longer contains {old!r}; update the test with the file"
            text = text.replace(old, new)
        self.sock = tmp / "admin.sock"
        text = text.replace("global\n", f"global\n    stats socket {self.sock} mode 600 level admin\n", 1)
        self.cfg = tmp / shipped
        self.cfg.write_text(text)
        exe = require("haproxy", "haproxy")
        check = subprocess.run([exe, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        self.out_path = tmp / "haproxy.out"
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([exe, "-db", "-f", str(self.cfg)], stdout=self.out, stderr=subprocess.STDOUT)

    def stat(self) -> dict[str, dict[str, str]]:
        """`show stat` of the privproxy backend: server name -> columns (status, check_status, ...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        cols = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(cols, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"]: r for r in rows if r["pxname"] == "privproxy" and r["svname"] not in ("BACKEND",)}

    def wait_status(self, want: dict[str, str], timeout: float = 15) -> dict[str, dict[str, str]]:
        deadline = time.monotonic() + timeout
        st: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.proc.returncode}: {self.out_path.read_text()}")
            if self.sock.exists():
                try:
                    st = self.stat()
                except OSError:
                    st = {}
                if all(st.get(k, {}).get("status") == v for k, v in want.items()):
                    return st
            time.sleep(0.2)
        raise AssertionError(f"HAProxy servers never reached {want}: {st}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()


def balance(tmp: Path, shipped: str, https_bind: tuple[str, str], first_port: int, a: Proxy, b: Proxy):
    """HAProxy with the shipped file, in front of a and b, once both are UP: (haproxy, https port, http port)."""
    https_port, http_port = free_port(), free_port()
    old, new = https_bind
    lb = HAProxy(tmp, shipped, {
        old: new.format(port=https_port),
        "bind :80": f"bind 127.0.0.1:{http_port}",
        f"127.0.0.1:{first_port} check port 9101": f"127.0.0.1:{a.port} check port {a.metrics[1]}",
        f"127.0.0.1:{first_port + 1} check port 9102": f"127.0.0.1:{b.port} check port {b.metrics[1]}",
    })
    try:
        st = lb.wait_status({"web-1": "UP", "web-2": "UP"})
    except BaseException:
        lb.stop()
        raise
    assert all(st[s]["check_status"] == "L7OK" for s in ("web-1", "web-2")), st  # /readyz answered 200
    return lb, https_port, http_port


def instance(tmp: Path, name: str, origin_url: str, *args: str) -> Proxy:
    return start_proxy(tmp / name, origin_url, "--trusted-proxy", "127.0.0.1/32", "--instance", name, *args,
                       metrics=True, env={"PRIVPROXY_SECRET": SECRET, "PRIVPROXY_CONSENT_KEY": CONSENT_KEY})


def merged_records(*proxies: Proxy, wait_for: int) -> list[dict]:
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while time.monotonic() < deadline:
        records = [r for p in proxies for r in p.log_records(wait_for=0, timeout=0.2)]
        if len(records) >= wait_for:
            break
        time.sleep(0.2)
    return sorted(records, key=lambda r: r["ts"])


@pytest.fixture
def pair(tmp_path, origin):
    ps = [instance(tmp_path, "web-1", origin.url), instance(tmp_path, "web-2", origin.url)]
    yield ps
    for p in ps:
        p.stop()


def test_http_mode_two_instances_truncate_and_ignore_spoofing(tmp_path, origin, pair):
    a, b = pair
    pem = make_self_signed(tmp_path / "combined.pem", "localhost")
    lb, https_port, http_port = balance(
        tmp_path, "haproxy.cfg",
        ("bind :443 ssl crt /etc/haproxy/certs/combined.pem", "bind 127.0.0.1:{port} ssl crt " + str(pem)), 8081, a, b)
    try:
        ctx = tls_context(pem)
        spoof = {"X-Forwarded-For": "203.0.113.77", "X-Real-IP": "203.0.113.78", "Forwarded": "for=203.0.113.79"}
        n = 12
        for i in range(n):
            r = request(https_port, f"/page/{i}?email=visitor@example.com", tls=ctx, headers=spoof)
            assert r.status == 200, r
        seen = origin.requests[-n:]
        # the origin sees the visitor's truncated address, from both instances; never the spoofed one
        assert {tuple(g.headers["x-forwarded-for"]) for g in seen} == {("127.9.8.0",)}
        assert {tuple(g.headers["x-forwarded-proto"]) for g in seen} == {("https",)}
        assert all("203.0.113" not in repr(g.headers) and CLIENT_IP not in repr(g.headers) for g in seen)
        # plain HTTP through HAProxy: X-Forwarded-Proto http, so the instance redirects to HTTPS (C1)
        r = request(http_port, "/plain")
        assert r.status == 308 and r.header("location").startswith("https://")
        records = merged_records(a, b, wait_for=n + 1)
        # both instances served; every record names its instance; merged by time they stay whole
        by_instance = {name: [r for r in records if r.get("instance") == name] for name in ("web-1", "web-2")}
        assert len(by_instance["web-1"]) >= 4 and len(by_instance["web-2"]) >= 4, {
            k: len(v) for k, v in by_instance.items()}
        assert len(records) == n + 1
        assert {r["client"] for r in records} == {"127.9.8.0"}
        assert all("visitor@example.com" not in r["path"] and "203.0.113" not in json.dumps(r) for r in records)

        # a stopped instance: requests before the health check notices are redispatched, none fails;
        # then the check takes it out and the other serves everything
        assert b.stop() == 0
        for i in range(4):
            assert request(https_port, f"/during/{i}", tls=ctx).status == 200
        lb.wait_status({"web-1": "UP", "web-2": "DOWN"})
        for i in range(4):
            assert request(https_port, f"/after/{i}", tls=ctx).status == 200
        want = len(by_instance["web-1"]) + 8
        assert len(a.log_records(wait_for=want)) == want  # all eight after the stop went to web-1
    finally:
        lb.stop()


def test_instances_agree_on_pseudonyms_and_consent(tmp_path, origin, pair):
    a, b = pair
    # the same secret: the same daily pseudonym for the same GA client id on both instances
    got = []
    for p in (a, b):
        assert request(p.port, GA4, tls=tls_context(p.ca), source="127.0.0.1",
                       headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": CLIENT_IP}).status == 200
        got.append(origin.last().path)
    assert got[0] == got[1]
    assert "1234567890" not in got[0] and "member-7" not in got[0] and "cid=" in got[0]
    # the same consent key: a token minted once is accepted by both
    mint = subprocess.run(privproxy_exe() + ["consent", "mint", "--member", "member-7"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PRIVPROXY_CONSENT_KEY": CONSENT_KEY})
    assert mint.returncode == 0, mint.stderr
    for p in (a, b):
        assert request(p.port, GA4, tls=tls_context(p.ca), headers={"Cookie": mint.stdout.strip()}).status == 200
        assert origin.last().path == GA4  # with consent, byte for byte


def test_spoofed_forwarded_for_direct_to_an_instance_is_ignored(pair, origin):
    # an instance trusts only HAProxy's address: a visitor reaching it directly cannot choose its address
    a, _ = pair
    r = request(a.port, "/direct", tls=tls_context(a.ca), headers={"X-Forwarded-For": "203.0.113.5"})
    assert r.status == 200
    assert origin.last().headers["x-forwarded-for"] == ["127.9.8.0"]


def test_tls_passthrough_with_proxy_protocol(tmp_path, origin):
    pem = make_self_signed(tmp_path / "combined.pem", "localhost")
    ps = [instance(tmp_path, name, origin.url, "--proxy-protocol", "--cert", str(pem)) for name in ("web-1", "web-2")]
    a, b = ps
    try:
        lb, https_port, http_port = balance(tmp_path, "haproxy-tls-passthrough.cfg",
                                            ("bind :443", "bind 127.0.0.1:{port}"), 8443, a, b)
    except BaseException:
        for p in ps:
            p.stop()
        raise
    try:
        ctx = tls_context(pem)  # the instances' certificate: TLS passes through HAProxy untouched
        n = 10
        for i in range(n):
            r = request(https_port, f"/tls/{i}", tls=ctx, headers={"X-Forwarded-For": "203.0.113.77"})
            assert r.status == 200
        seen = origin.requests[-n:]
        assert {tuple(g.headers["x-forwarded-for"]) for g in seen} == {("127.9.8.0",)}
        assert {tuple(g.headers["x-forwarded-proto"]) for g in seen} == {("https",)}
        r = request(http_port, "/plain")
        assert r.status == 308
        records = merged_records(a, b, wait_for=n + 1)
        assert len(records) == n + 1
        assert {r["instance"] for r in records} == {"web-1", "web-2"}
        assert {r["client"] for r in records} == {"127.9.8.0"}
        assert {r["tls"] for r in records if r["path"].startswith("/tls/")} <= {"TLSv1.2", "TLSv1.3"}
        # a visitor connecting straight to an instance cannot announce an address: refused, counted
        with pytest.raises((ConnectionError, OSError)):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5, source_address=(CLIENT_IP, 0))
            s.sendall(b"PROXY TCP4 198.51.100.1 127.0.0.1 1234 443\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(1):
                raise ConnectionError("closed without an answer")
        import urllib.request
        m = urllib.request.urlopen(f"http://127.0.0.1:{a.metrics[1]}/metrics", timeout=5).read().decode()
        assert 'privproxy_proxy_protocol_connections_total{result="untrusted_peer"} 1.0' in m
        assert "198.51.100" not in json.dumps(merged_records(a, b, wait_for=n + 1))
    finally:
        lb.stop()
        for p in ps:
            p.stop()
