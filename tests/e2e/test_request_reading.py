"""The real proxy reads a request as the origin will, end to end (issue 17 items 1, 2, 4, 5, 9).

A raw TLS client sends spellings a naive proxy reads differently from nginx; the recording origin shows what
arrived, the access log what was written. Beacons in any spelling arrive scrubbed and in the vendor's own
spelling; heads no server reads one way only are answered 400 with a record and never reach the origin;
address headers are removed by their value; bodies go out as they were inspected.
"""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest

from tests.helpers import CLIENT_IP, Origin, read_until_closed, start_proxy, tls_context

pytestmark = pytest.mark.e2e

UID = "member-4711"
CID = "1234567890.1700000000"
GA4 = f"v=2&tid=G-ABC123&cid={CID}&uid={UID}&en=page_view&_uip=203.0.113.77"


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, origin):
    p = start_proxy(tmp_path_factory.mktemp("proxy"), origin.url, env={"PRIVPROXY_SECRET": "reading-e2e-secret"})
    yield p
    p.stop()


def raw(proxy, head: bytes, body: bytes = b"") -> bytes:
    """One request sent byte for byte over TLS; the whole answer."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=(CLIENT_IP, 0))
    with tls_context(proxy.ca).wrap_socket(sock, server_hostname="localhost") as s:
        s.sendall(head + body)
        s.settimeout(5)
        return read_until_closed(s)


def get(proxy, target: str, *headers: str, host: str = "localhost") -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *headers, "Connection: close", "", ""]
    return raw(proxy, "\r\n".join(lines).encode("utf-8", "surrogateescape"))


def arrived(origin, before: int) -> list:
    return origin.requests[before:]


@pytest.mark.parametrize("spelling", ["//g/collect", "/g/%63ollect", "/G/Collect", "/g/collect/", "/./g/collect",
                                      "/x/../g/collect", "/g/collect;x=1", "/g\\collect", "/%2fg/collect"])
def test_a_beacon_in_any_spelling_arrives_scrubbed_in_the_vendors_spelling(proxy, origin, spelling):
    before = len(origin.requests)
    answer = get(proxy, f"{spelling}?{GA4}")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    (req,) = arrived(origin, before)
    assert req.path.startswith("/g/collect?")
    assert UID not in req.path and "1234567890" not in req.path and "203.0.113.77" not in req.path
    assert "_uip=203.0.113.0" in req.path


@pytest.mark.parametrize("target", ["/x%zz", "/x%00y", "/../etc/passwd", "/a/../..", "/p\x01q"])
def test_targets_no_server_reads_one_way_are_refused_and_recorded(proxy, origin, target):
    before = len(origin.requests)
    answer = get(proxy, target)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert arrived(origin, before) == []


@pytest.mark.parametrize("header", ["X-Thing: a\r\n b", "X-Thing: a\rb", "X-Thing: a\x00b"])
def test_header_values_rfc_9110_forbids_are_refused(proxy, origin, header):
    before = len(origin.requests)
    answer = get(proxy, "/page", header)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert arrived(origin, before) == []


def test_two_hosts_or_an_odd_host_are_refused(proxy, origin):
    before = len(origin.requests)
    assert get(proxy, "/page", "Host: other.example").startswith(b"HTTP/1.1 400")
    assert get(proxy, "/page", host="host:1:2").startswith(b"HTTP/1.1 400")
    assert arrived(origin, before) == []


def test_absolute_form_goes_upstream_in_origin_form_and_must_name_the_host(proxy, origin):
    before = len(origin.requests)
    answer = get(proxy, f"https://localhost/g/collect?{GA4}")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    (req,) = arrived(origin, before)
    assert req.path.startswith("/g/collect?") and UID not in req.path
    assert get(proxy, "https://elsewhere.example/page").startswith(b"HTTP/1.1 400")
    assert len(arrived(origin, before)) == 1


def test_a_trailing_dot_and_case_are_the_same_host(proxy, origin):
    before = len(origin.requests)
    assert get(proxy, "/page", host="LocalHost.").startswith(b"HTTP/1.1 200")
    (req,) = arrived(origin, before)
    assert req.headers["host"] == ["localhost"]


def test_address_headers_are_removed_by_their_value(proxy, origin):
    before = len(origin.requests)
    get(proxy, "/page", "CloudFront-Viewer-Address: 198.51.100.23:443", "X-Azure-SocketIP: 198.51.100.23",
        "X-Made-Up-Client: [2002:c633:6417::1]:8080", "X-Note: hello", "Accept-Language: ja;q=0.9")
    (req,) = arrived(origin, before)
    sent = json.dumps(req.headers)
    assert "198.51.100.23" not in sent and "2002:c633" not in sent
    assert req.headers["x-note"] == ["hello"] and req.headers["accept-language"] == ["ja;q=0.9"]


def test_bodies_go_out_as_inspected(proxy, origin):
    body = json.dumps({"type": "track", "userId": UID, "event": "buy"}).encode()
    members = gzip.compress(body[:20]) + gzip.compress(body[20:])  # two gzip members: Node reads both
    before = len(origin.requests)
    head = (f"POST /v1/t HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(members)}\r\nConnection: close\r\n\r\n").encode()
    assert raw(proxy, head, members).startswith(b"HTTP/1.1 200")
    (req,) = arrived(origin, before)
    sent = gzip.decompress(req.body)
    assert UID.encode() not in sent and json.loads(sent)["event"] == "buy"
    dup = b'{"type":"track","userId":"' + UID.encode() + b'","userId":null,"event":"buy"}'
    head = (f"POST /v1/t HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(dup)}\r\nConnection: close\r\n\r\n").encode()
    assert raw(proxy, head, dup).startswith(b"HTTP/1.1 200")
    assert UID.encode() not in origin.last().body  # a first-wins parser would have read the member id
    bom = b"\xef\xbb\xbf" + body
    head = (f"POST /v1/t HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(bom)}\r\nConnection: close\r\n\r\n").encode()
    assert raw(proxy, head, bom).startswith(b"HTTP/1.1 204")  # refused, not forwarded
    assert len(arrived(origin, before)) == 2


def test_every_answer_has_one_whole_record(proxy, origin):
    get(proxy, "/p%E2%80%A8q", "User-Agent: Mozilla/5.0 \xe2\x80\xa8x".encode().decode("utf-8"))
    get(proxy, "/caf\udcff")  # a byte that is no UTF-8
    get(proxy, "/x%zz")
    proxy_log = proxy.log_dir / "access.jsonl"
    deadline = time.monotonic() + 5  # the module's proxy has answered other tests; wait for these three
    while True:
        records = proxy.log_records()
        paths = [r["path"] for r in records]
        if ("/caf%FF" in paths and "-" in paths) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lines = proxy_log.read_text(encoding="utf-8").splitlines()  # splitlines splits on U+2028 too
    assert len(lines) == len(records) and all(json.loads(x)["v"] == 1 for x in lines)
    paths = [r["path"] for r in records]
    assert "/caf%FF" in paths and "-" in paths  # the refused target: nothing of it kept
