"""C1 end to end: redirect, HSTS, Secure cookies, TLS 1.2 minimum (000 §7; 001 §7.2)."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from tests.helpers import CLIENT_IP, read_until_closed, request, start_proxy, tls_context


def test_plain_http_is_redirected_with_path_and_query(proxy, origin):
    # 001 §7.2: communication is encrypted, so plain HTTP never reaches the origin
    r = request(proxy.port, "/shop/item?id=7&q=watch")
    assert r.status == 308
    assert r.header("location") == f"https://localhost:{proxy.port}/shop/item?id=7&q=watch"
    assert r.header("strict-transport-security") is None  # RFC 6797 §7.2: never over plain HTTP
    assert origin.requests == []


def test_post_redirect_keeps_method_semantics(proxy, origin):
    r = request(proxy.port, "/form", method="POST", body=b"a=1")
    assert r.status == 308  # 308 (not 301) so the browser repeats the POST over HTTPS
    assert origin.requests == []


def test_acme_challenge_is_exempt(proxy, origin):
    r = request(proxy.port, "/.well-known/acme-challenge/token123")
    assert r.status == 200
    assert origin.last().path == "/.well-known/acme-challenge/token123"
    assert origin.last().headers["x-forwarded-proto"] == ["http"]


def test_https_response_has_hsts_and_secure_cookies(proxy, origin):
    # 000 §7: cookies only over SSL
    r = request(proxy.port, "/cookies", tls=tls_context(proxy.ca))
    assert r.status == 200
    assert r.header("strict-transport-security") == "max-age=63072000; includeSubDomains"
    cookies = r.all("set-cookie")
    assert cookies == ["session=abc; Path=/; HttpOnly; Secure", "pref=dark; Path=/; Secure; SameSite=Lax"]
    assert origin.last().headers["x-forwarded-proto"] == ["https"]


def tls11_server_accepts(client: ssl.SSLContext, pem) -> str:
    """Control: this client really completes TLS 1.1 with a server that allows it (so a refusal is the proxy's)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem)
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.minimum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_server(("127.0.0.1", 0)) as ls:
        result: list[str] = []

        def serve() -> None:
            conn, _ = ls.accept()
            with server.wrap_socket(conn, server_side=True) as s:
                result.append(s.version() or "")

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with client.wrap_socket(socket.create_connection(ls.getsockname(), timeout=5),
                                server_hostname="localhost") as c:
            version = c.version() or ""
        t.join(5)
    return version


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused_and_1_2_accepted(proxy, tmp_path):
    # 000 §7 / C1: clients below TLS 1.2 are refused
    from tests.certs import make_self_signed

    pem = make_self_signed(tmp_path / "control.pem", "localhost")
    control = tls_context(pem, minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    assert tls11_server_accepts(control, pem) == "TLSv1.1"
    old = tls_context(proxy.ca, minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        request(proxy.port, "/", tls=old)
    ok = tls_context(proxy.ca, minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2)
    assert request(proxy.port, "/", tls=ok).status == 200


def suite_accepted(port: int, ca, suite: str) -> bool:
    ctx = tls_context(ca, minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(suite + ":@SECLEVEL=0")
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost"):
            return True
    except (ssl.SSLError, ConnectionResetError):
        return False


@pytest.mark.parametrize("suite, accepted", [
    ("ECDHE-RSA-AES128-GCM-SHA256", True),
    ("ECDHE-RSA-CHACHA20-POLY1305", True),
    ("ECDHE-RSA-AES128-SHA256", False),  # CBC
    ("ECDHE-RSA-AES256-SHA", False),  # CBC
    ("AES128-GCM-SHA256", False),  # static RSA key exchange: no forward secrecy
    ("AES256-SHA256", False),
])
def test_tls_1_2_offers_forward_secret_aead_suites_only(proxy, suite, accepted):
    # C1: what was recorded cannot be decrypted later with the server key, nor altered in transit
    assert suite_accepted(proxy.port, proxy.ca, suite) is accepted


def test_the_proxys_own_error_answers_carry_hsts_and_no_banner(proxy):
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5, source_address=(CLIENT_IP, 0))
    with tls_context(proxy.ca).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /a HTTP/1.1 junk\r\nHost: localhost\r\n\r\n")
        got = read_until_closed(s)
    head = got.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 400 ") and b"\r\nserver:" not in head
    assert b"strict-transport-security: max-age=63072000; includesubdomains" in head


def test_operator_certificate_is_served(tmp_path, origin):
    # --cert: the operator's own certificate instead of the demo CA's
    from tests.certs import make_self_signed

    pem = make_self_signed(tmp_path / "site.pem", "www.example.test")
    p = start_proxy(tmp_path / "p", origin.url, "--cert", str(pem))
    try:
        ctx = tls_context(pem)
        r = request(p.port, "/", tls=ctx, host="www.example.test")
        assert r.status == 200
        with pytest.raises(ssl.SSLError):  # the demo CA did not sign this one
            request(p.port, "/", tls=tls_context(p.ca), host="www.example.test")
    finally:
        p.stop()


def test_missing_cert_is_a_clear_error(tmp_path, origin):
    import subprocess

    from tests.helpers import privproxy_exe

    r = subprocess.run(privproxy_exe() + ["run", "--upstream", origin.url, "--cert", str(tmp_path / "nope.pem")],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 1
    assert "nope.pem does not exist" in r.stderr and "PEM" in r.stderr


def test_trusted_load_balancer_https_counts_as_https(tmp_path, origin):
    # Behind a TLS-terminating load balancer: X-Forwarded-Proto from a trusted proxy means HTTPS
    p = start_proxy(tmp_path / "p", origin.url, "--trusted-proxy", "127.5.5.5/32")
    try:
        r = request(p.port, "/lb", source="127.5.5.5",
                    headers={"X-Forwarded-For": "198.51.100.23", "X-Forwarded-Proto": "https"})
        assert r.status == 200
        assert r.header("strict-transport-security")
        # the same claim from an untrusted client is ignored: redirect
        r = request(p.port, "/lb", source=CLIENT_IP, headers={"X-Forwarded-Proto": "https"})
        assert r.status == 308
    finally:
        p.stop()
