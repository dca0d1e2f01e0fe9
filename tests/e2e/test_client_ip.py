"""C2, C8, C15 end to end: the origin sees only the truncated client address (001 §9.2.1; 004; 000 §3)."""

from __future__ import annotations

from tests.helpers import CLIENT_IP, request, start_proxy, tls_context

SPOOF = {
    "X-Forwarded-For": "203.0.113.77",
    "X-Real-IP": "203.0.113.78",
    "Forwarded": "for=203.0.113.79;proto=https",
    "True-Client-IP": "203.0.113.80",
    "CF-Connecting-IP": "203.0.113.81",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
}


def test_origin_sees_truncated_client_ip(proxy, origin):
    # 004: the IP address is personal information; 001 §9.2.1: logs cannot identify anyone
    r = request(proxy.port, "/page", tls=tls_context(proxy.ca))
    assert r.status == 200
    got = origin.last()
    assert got.headers["x-forwarded-for"] == ["127.9.8.0"]
    assert got.headers["x-forwarded-proto"] == ["https"]
    assert CLIENT_IP not in repr(got.headers)


def test_spoofed_forwarding_headers_are_ignored_and_removed(proxy, origin):
    # 000 §3 / C15: an untrusted client cannot choose the address the origin sees
    r = request(proxy.port, "/page", tls=tls_context(proxy.ca), headers=SPOOF)
    assert r.status == 200
    got = origin.last()
    assert got.headers["x-forwarded-for"] == ["127.9.8.0"]
    for name in ("x-real-ip", "forwarded", "true-client-ip", "cf-connecting-ip"):
        assert name not in got.headers
    assert "203.0.113" not in repr(got.headers)
    assert got.headers["x-forwarded-host"] == [f"localhost:{proxy.port}"]


def test_trusted_proxy_chain_is_walked_right_to_left(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, "--trusted-proxy", "127.5.5.0/24", "--trusted-proxy", "10.0.0.0/8")
    try:
        # client-written 1.1.1.1, real client 198.51.100.23, then an internal hop 10.1.2.3, then the LB (peer)
        headers = {"X-Forwarded-For": "1.1.1.1, 198.51.100.23, 10.1.2.3", "X-Forwarded-Proto": "https",
                   "X-Real-IP": "1.1.1.1"}
        assert request(p.port, "/chain", source="127.5.5.5", headers=headers).status == 200
        got = origin.last()
        assert got.headers["x-forwarded-for"] == ["198.51.100.0"]
        assert "x-real-ip" not in got.headers
        # RFC 7239 Forwarded with IPv6 and a port
        headers = {"Forwarded": 'for="[2001:db8:cafe:17::1]:4711";proto=https'}
        assert request(p.port, "/fwd", source="127.5.5.5", headers=headers).status == 200
        assert origin.last().headers["x-forwarded-for"] == ["2001:db8:cafe::"]
        # garbage from a trusted proxy: the proxy's own address stands in, never the garbage
        assert request(p.port, "/bad", source="127.5.5.5",
                       headers={"X-Forwarded-For": "not-an-ip", "X-Forwarded-Proto": "https"}).status == 200
        assert origin.last().headers["x-forwarded-for"] == ["127.5.5.0"]
    finally:
        p.stop()


def test_log_has_truncated_address_and_no_port(proxy, origin):
    request(proxy.port, "/logged", tls=tls_context(proxy.ca))
    records = proxy.log_records(wait_for=1)
    assert records and records[-1]["client"] == "127.9.8.0"
    text = (proxy.log_dir / "access.jsonl").read_text()
    assert CLIENT_IP not in text
    assert "port" not in records[-1]


def test_nothing_printed_carries_the_client_address(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, "-v")
    try:
        request(p.port, "/a", tls=tls_context(p.ca))
        request(p.port, "/b")
    finally:
        p.stop()
    out = p.stderr() + (tmp_path / "p" / "stdout.txt").read_text()
    assert CLIENT_IP not in out
