"""privproxy.gateway: what a vendor's collector gets for a scrubbed beacon, what the browser gets of its answer, and
the pooled client (verified TLS, timeouts, size bound, no cookie jar) against a local HTTPS vendor."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import ssl
from urllib.parse import parse_qs, urlsplit

import pytest

from privproxy import gateway
from privproxy.beacons import Endpoint, Forward
from privproxy.gateway import VendorClient, VendorError, VendorRequest, vendor_request
from privproxy.vendors.base import Limits
from tests.certs import Authority
from tests.helpers import closed_port
from tests.vendor_server import Silent, Vendor

ADDR = "127.9.8.0"
FIELDS = [("Host", "shop.example"), ("Content-Type", "application/json"), ("Content-Length", "99"),
          ("Connection", "keep-alive"), ("X-Forwarded-For", ADDR), ("X-Forwarded-Host", "shop.example"),
          ("X-Forwarded-Proto", "https"), ("X-Request-Id", "abc"), ("User-Agent", "Chrome 120 (Windows)"),
          ("Origin", "https://shop.example")]


def fwd(vendor: str, prefix: str = "", base: str = "") -> Forward:
    return Forward(vendor, Endpoint("https", "collector.example", 443, base), prefix)


def req(vendor: str, target: str, body: object = b"", method: str = "POST", fields=FIELDS, prefix: str = "",
        client: str = ADDR) -> VendorRequest:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return vendor_request(fwd(vendor, prefix), method, target, fields, data, client, Limits())


def test_the_collector_url_host_and_only_the_headers_a_vendor_needs():
    r = req("posthog", "/ingest/e/?ver=1", {"event": "x", "properties": {"$ip": "203.0.113.0"}}, prefix="/ingest")
    assert r.url == "https://collector.example/e/?ver=1" and r.method == "POST"
    names = [k.lower() for k, _ in r.headers]
    assert names[0] == "host" and r.headers[0][1] == "collector.example"
    assert not {"x-forwarded-host", "x-forwarded-proto", "x-request-id", "content-length", "connection"} & set(names)
    assert names.count("host") == 1 and dict(r.headers)["X-Forwarded-For"] == ADDR
    assert ("Origin", "https://shop.example") in r.headers
    assert json.loads(r.body)["properties"]["$ip"] == "203.0.113.0"  # the SDK's, truncated already: not replaced


def test_a_port_and_a_base_path_of_the_collector():
    f = Forward("matomo", Endpoint("https", "stats.example", 8443, "/matomo"))
    r = vendor_request(f, "GET", "/matomo.php?idsite=1", FIELDS, b"", ADDR, Limits())
    assert r.url == "https://stats.example:8443/matomo/matomo.php?idsite=1"
    assert dict(r.headers)["Host"] == "stats.example:8443"


def test_the_prefix_is_stripped_only_at_a_segment_boundary():
    assert fwd("posthog", "/ingest").target("/ingest/e/") == "/e/"
    assert fwd("posthog", "/ingest").target("/INGEST/batch/?x=1") == "/batch/?x=1"
    assert fwd("posthog", "/ingest").target("/ingestion/e/") == "/ingestion/e/"


@pytest.mark.parametrize(("vendor", "target", "body", "check"), [
    ("segment", "/v1/t", {"event": "a", "anonymousId": "x"}, lambda q, b: b["context"]["ip"] == ADDR),
    ("segment", "/v1/batch", {"batch": [{"event": "a", "anonymousId": "x"},
                                        {"event": "b", "anonymousId": "x", "context": {"ip": "203.0.113.0"}}]},
     lambda q, b: [e["context"]["ip"] for e in b["batch"]] == [ADDR, "203.0.113.0"]),
    ("amplitude", "/2/httpapi", {"api_key": "k", "events": [{"event_type": "a", "ip": "$remote"}, {"event_type": "b"}]},
     lambda q, b: [e["ip"] for e in b["events"]] == [ADDR, ADDR]),
    ("posthog", "/batch/", {"api_key": "k", "batch": [{"event": "a", "properties": {}}]},
     lambda q, b: b["batch"][0]["properties"]["$ip"] == ADDR),
    ("ga4", "/mp/collect?measurement_id=G-1", {"client_id": "1.2", "events": [{"name": "a"}]},
     lambda q, b: b["ip_override"] == ADDR),
])
def test_the_address_where_each_json_collector_reads_it(vendor, target, body, check):
    r = req(vendor, target, body)
    assert check(parse_qs(urlsplit(r.url).query), json.loads(r.body))


def test_ga4_and_universal_analytics_get_it_as_a_parameter():
    r = req("ga4", "/g/collect?v=2&tid=G-1&cid=1.2&en=page_view", method="GET")
    assert parse_qs(urlsplit(r.url).query)["_uip"] == [ADDR]
    kept = req("ga4", "/g/collect?v=2&_uip=203.0.113.0&en=page_view", method="GET")
    assert parse_qs(urlsplit(kept.url).query)["_uip"] == ["203.0.113.0"]
    lines = req("ga4", "/g/collect?v=2&tid=G-1", b"en=a&_uip=203.0.113.0\r\nen=b",
                fields=[("Content-Type", "text/plain")])
    assert "_uip" not in urlsplit(lines.url).query  # a hit line names one: none added for the batch
    ua = req("universal_analytics", "/collect?v=1&t=pageview&cid=1.2", method="GET")
    assert parse_qs(urlsplit(ua.url).query)["uip"] == [ADDR]


def test_gzip_and_base64_transports_are_kept():
    gz = req("posthog", "/e/?compression=gzip-js", gzip.compress(b'{"event": "a", "properties": {}}'),
             fields=[("Content-Type", "text/plain")])
    assert json.loads(gzip.decompress(gz.body))["properties"]["$ip"] == ADDR
    form = "data=" + base64.b64encode(b'{"event": "a", "properties": {}}').decode()
    b64 = req("posthog", "/e/", form.encode(), fields=[("Content-Type", "application/x-www-form-urlencoded")])
    assert b64.body == form.encode()  # PostHog reads X-Forwarded-For for these
    assert dict(b64.headers)["X-Forwarded-For"] == ADDR


def test_mixpanel_reads_x_real_ip_and_no_address_without_a_client():
    mp = req("mixpanel", "/track?ip=1&data=e30", method="GET")
    assert dict(mp.headers)["X-Real-IP"] == ADDR and dict(mp.headers)["X-Forwarded-For"] == ADDR
    none = req("segment", "/v1/t", {"event": "a", "anonymousId": "x"}, client="")
    assert "context" not in json.loads(none.body) and "X-Forwarded-For" not in dict(none.headers)


def test_the_browser_gets_content_caching_and_cors_headers_only():
    got = gateway.answer_fields([
        ("Content-Type", "image/gif"), ("Access-Control-Allow-Origin", "https://shop.example"),
        ("Access-Control-Allow-Credentials", "true"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
        ("Strict-Transport-Security", "max-age=1"), ("Alt-Svc", 'h3=":443"'), ("Server", "x"), ("Via", "1.1 v"),
        ("Cache-Control", "no-store"), ("Connection", "close")])
    assert [k for k, _ in got] == ["Content-Type", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
                                   "Set-Cookie", "Set-Cookie", "Cache-Control"]


def test_the_cookie_jar_keeps_nothing():
    jar = gateway.no_cookie_jar()
    import httpx

    cookies = httpx.Cookies(jar)
    resp = httpx.Response(200, headers=[("Set-Cookie", "a=1; Path=/")],
                          request=httpx.Request("GET", "https://collector.example/"))
    cookies.extract_cookies(resp)
    assert len(jar) == 0


# --- The client against a local HTTPS vendor --------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path):
    a = Authority("unit vendor")
    return a, a.root_pem(tmp_path / "ca.pem").read_bytes()


def run(coro):
    return asyncio.run(coro)


def test_verified_pooled_and_without_a_cookie_jar(tmp_path, ca):
    authority, pem = ca
    v = Vendor(authority, tmp_path)
    client = VendorClient(pem, timeout=5)

    async def two():
        r = VendorRequest("ga4", "GET", f"{v.url}/g/collect?v=2", (("Host", f"localhost:{v.port}"),), b"")
        return await client.send(r), await client.send(r)

    try:
        a, b = run(two())
        run(client.aclose())
    finally:
        v.close()
    assert a.status == b.status == 204 and a.seconds >= 0
    assert [k.lower() for k, _ in a.headers].count("set-cookie") == 2
    assert "cookie" not in v.requests[1].headers  # the first answer's Set-Cookie is not sent again
    assert set(v.requests[0].headers) == {"host"}  # no python-httpx User-Agent, Accept or Accept-Encoding
    assert v.sni == ["localhost"]  # one TLS connection, kept alive for the second request


def test_an_untrusted_certificate_is_refused(tmp_path, ca):
    v = Vendor(Authority("someone else"), tmp_path)
    client = VendorClient(ca[1], timeout=5)
    try:
        with pytest.raises(VendorError) as e:
            run(client.send(VendorRequest("ga4", "GET", f"{v.url}/g/collect", (), b"")))
    finally:
        v.close()
    assert e.value.reason == "tls" and e.value.status == 502 and v.requests == []


def test_down_slow_and_too_large(tmp_path, ca):
    authority, pem = ca
    silent = Silent()
    big = Vendor(authority, tmp_path, responses={"/big": (200, [], b"x" * 5000)})
    client = VendorClient(pem, timeout=0.5)
    try:
        with pytest.raises(VendorError) as down:
            run(client.send(VendorRequest("ga4", "GET", f"https://localhost:{closed_port()}/g/collect", (), b"")))
        with pytest.raises(VendorError) as slow:
            run(client.send(VendorRequest("ga4", "GET", f"https://localhost:{silent.port}/g/collect", (), b"")))
        with pytest.raises(VendorError) as large:
            run(client.send(VendorRequest("ga4", "GET", f"{big.url}/big", (), b""), max_body=1000))
    finally:
        silent.close()
        big.close()
    assert (down.value.reason, down.value.status) == ("connect", 502)
    assert (slow.value.reason, slow.value.status) == ("timeout", 504)
    assert large.value.reason == "too_large"


def test_a_ca_file_that_is_no_certificate_is_refused():
    with pytest.raises(ssl.SSLError):
        gateway.tls_context(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_an_ip_address_collector_with_a_plain_private_ca_certificate(tmp_path, ca):
    """`https://127.0.0.1:PORT` with a leaf as private CAs often issue it (an IP address SAN, no Authority Key
    Identifier, no EKU): verified against forward_ca, without Python's RFC 5280 strict mode."""
    import datetime
    import ipaddress
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    authority, pem = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(authority.intermediate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=5))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(authority.key, hashes.SHA256()))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM)
                                        + authority.intermediate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hosts.append(self.headers["host"])
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "key.pem")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        got = run(VendorClient(pem, timeout=5).send(
            VendorRequest("ga4", "GET", f"https://127.0.0.1:{port}/g/collect", (("Host", f"127.0.0.1:{port}"),), b"")))
        with pytest.raises(VendorError) as other:  # the same server under the name `localhost`: not its certificate
            run(VendorClient(pem, timeout=5).send(VendorRequest("ga4", "GET", f"https://localhost:{port}/g", (), b"")))
    finally:
        server.shutdown()
        server.server_close()
    assert got.status == 204 and hosts == [f"127.0.0.1:{port}"] and other.value.reason == "tls"


def test_a_vendor_gets_only_the_header_fields_a_collector_needs_and_the_referrers_origin():
    from privproxy import beacons, gateway
    from privproxy.vendors.base import Limits

    fwd = beacons.Forward("segment", beacons.endpoint("https://api.segment.io"))
    fields = [("Host", "shop.example"), ("Content-Type", "application/json"), ("User-Agent", "Chrome 120 (Windows)"),
              ("Authorization", "Basic c2l0ZTpwdw=="), ("X-Api-Key", "k"), ("X-Internal-User", "jane"),
              ("Referer", "https://shop.example/account/orders?order=99"), ("Origin", "https://shop.example"),
              ("Sec-GPC", "1")]
    req = gateway.vendor_request(fwd, "POST", "/v1/t", fields, b'{"type":"track"}', "203.0.113.0", Limits())
    names = [k.lower() for k, _ in req.headers]
    assert "authorization" not in names and "x-api-key" not in names and "x-internal-user" not in names
    assert dict(req.headers)["Referer"] == "https://shop.example/" and dict(req.headers)["Host"] == "api.segment.io"
    assert {"content-type", "user-agent", "origin", "sec-gpc", "x-forwarded-for"} <= set(names)


@pytest.mark.parametrize(("ref", "origin"), [
    ("https://shop.example/a?b=c#d", "https://shop.example/"), ("HTTP://Shop.Example:8443/x", "http://shop.example:8443/"),
    ("https://user:pw@shop.example/x", "https://shop.example/"), ("https://[2001:db8::1]/x", "https://[2001:db8::1]/"),
    ("android-app://com.x/", ""), ("not a url", ""), ("https://[::1/x", ""),
])
def test_the_referrer_a_vendor_gets_is_an_origin(ref, origin):
    from privproxy import gateway

    assert gateway.referrer_origin(ref) == origin
