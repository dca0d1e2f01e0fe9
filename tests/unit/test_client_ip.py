"""Client address resolution: trusted proxies only, right-to-left walk, spoofing ignored (C2, C15; 000 §3)."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import client_ip, truncate
from privproxy.client_ip import Settings
from privproxy.truncate import Truncation


def headers(**h: str):
    norm = {k.replace("_", "-").lower(): [v] for k, v in h.items()}
    return lambda name: norm.get(name.lower(), [])


TRUST = Settings(trusted_proxies=client_ip.parse_networks(["10.0.0.0/8", "127.5.5.5"]))


def test_untrusted_peer_is_the_client_and_headers_are_ignored():
    c = client_ip.resolve("127.9.8.7", True, headers(x_forwarded_for="1.2.3.4", x_forwarded_proto="http"), TRUST)
    assert c.truncated == "127.9.8.0" and c.https is True and c.ignored_headers and not c.via_proxy


def test_untrusted_peer_cannot_claim_https():
    c = client_ip.resolve("127.9.8.7", False, headers(x_forwarded_proto="https"), TRUST)
    assert c.https is False


@pytest.mark.parametrize("xff,expected", [
    ("198.51.100.23", "198.51.100.0"),
    ("1.1.1.1, 198.51.100.23", "198.51.100.0"),  # leftmost is client-written: never believed
    ("1.1.1.1, 198.51.100.23, 10.1.2.3", "198.51.100.0"),  # trusted internal hop skipped
    ("10.9.9.9, 10.1.2.3", "10.9.9.0"),  # all trusted: the leftmost trusted hop
    ("198.51.100.23:4711", "198.51.100.0"),  # IIS/Azure append a port
    ("[2001:db8:cafe::17]:4711", "2001:db8:cafe::"),
    ("::ffff:198.51.100.23", "198.51.100.0"),
])
def test_trusted_chain(xff, expected):
    c = client_ip.resolve("10.0.0.1", False, headers(x_forwarded_for=xff, x_forwarded_proto="https"), TRUST)
    assert c.truncated == expected and c.via_proxy and c.https


@pytest.mark.parametrize("xff", ["unknown", "", "300.1.1.1", "_hidden", "1.1.1.1, garbage"])
def test_malformed_hop_falls_back_to_the_proxy(xff):
    c = client_ip.resolve("10.0.0.1", False, headers(x_forwarded_for=xff), TRUST)
    assert c.malformed and c.truncated == "10.0.0.0"


def test_forwarded_header_rfc7239():
    s = Settings(trusted_proxies=TRUST.trusted_proxies, headers=("forwarded",))
    c = client_ip.resolve("127.5.5.5", False, headers(
        forwarded='for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1'), s)
    assert c.truncated == "2001:db8:cafe::" and c.https


def test_rightmost_proto_wins():
    c = client_ip.resolve("10.0.0.1", False, headers(x_forwarded_for="198.51.100.1", x_forwarded_proto="https, http"),
                          TRUST)
    assert c.https is False


def test_no_headers_from_trusted_peer():
    c = client_ip.resolve("10.0.0.1", False, headers(), TRUST)
    assert c.truncated == "10.0.0.0" and not c.via_proxy


def test_unparsable_peer():
    assert client_ip.resolve("not-an-ip", False, headers(), TRUST) is None


def test_forwarded_parser_quotes():
    assert client_ip.forwarded_elements(['for="a,b;c";proto=http, for=x']) == [
        {"for": "a,b;c", "proto": "http"}, {"for": "x"}]


def test_parse_networks_rejects_garbage():
    with pytest.raises(ValueError, match="nope"):
        client_ip.parse_networks(["nope"])


# --- Forwarded proto: only from the element whose `for` was taken (C1, C15) ----------------------------------
FWD = Settings(trusted_proxies=TRUST.trusted_proxies, headers=("forwarded",))


@pytest.mark.parametrize("forwarded,client,https", [
    # The case: the proxy's own element has no proto; the client's element further left says https.
    ("for=1.1.1.1;proto=https, for=198.51.100.1", "198.51.100.0", False),
    ("proto=https, for=198.51.100.1", "198.51.100.0", False),
    ("for=198.51.100.1;proto=https", "198.51.100.0", True),
    ("for=198.51.100.1;proto=HTTPS", "198.51.100.0", True),
    # Two trusted hops: the edge wrote the client's element; the inner hop's https is between our proxies.
    ("for=198.51.100.1;proto=http, for=10.0.0.2;proto=https", "198.51.100.0", False),
    ("for=198.51.100.1, for=10.0.0.2;proto=https", "198.51.100.0", False),
    ("for=198.51.100.1;proto=https, for=10.0.0.2", "198.51.100.0", True),
    ("for=1.1.1.1;proto=https, for=198.51.100.1, for=10.0.0.2;proto=https", "198.51.100.0", False),
    # Every hop trusted: the leftmost element, written by the first trusted proxy, is the client's.
    ("for=10.9.9.9;proto=https, for=10.0.0.2", "10.9.9.0", True),
])
def test_forwarded_proto_only_from_the_clients_element(forwarded, client, https):
    c = client_ip.resolve("127.5.5.5", False, headers(forwarded=forwarded), FWD)
    assert (c.truncated, c.https) == (client, https)


def test_forwarded_proto_of_a_malformed_element_is_the_trusted_peers_own():
    c = client_ip.resolve("127.5.5.5", False, headers(forwarded="for=unknown;proto=https"), FWD)
    assert c.malformed and c.truncated == "127.5.5.0" and c.https


def test_x_forwarded_proto_rightmost_value_only():
    for xfp, https in [("https", True), ("https, http", False), ("http, https", True), ("https,", False)]:
        c = client_ip.resolve("10.0.0.1", False, headers(x_forwarded_for="198.51.100.1", x_forwarded_proto=xfp), TRUST)
        assert c.https is https, xfp


# --- a trusted CDN's single-address header -------------------------------------------------------------------
@pytest.mark.parametrize("name,value,expected", [
    ("cf-connecting-ip", "198.51.100.23", "198.51.100.0"),
    ("cf-connecting-ip", "2001:db8:cafe::17", "2001:db8:cafe::"),
    ("true-client-ip", "198.51.100.23", "198.51.100.0"),
    ("cloudfront-viewer-address", "198.51.100.23:46532", "198.51.100.0"),
    ("cloudfront-viewer-address", "2001:db8:cafe::17:46532", "2001:db8:cafe::"),  # IPv6 unbracketed, port last
    ("cloudfront-viewer-address", "2001:db8:cafe:0:0:0:0:17:443", "2001:db8:cafe::"),
    ("cloudfront-viewer-address", "2001:db8:::443", "2001:db8::"),  # the client 2001:db8:: and its port
    ("cloudfront-viewer-address", "[2001:db8:cafe::17]:443", "2001:db8:cafe::"),
    ("fastly-client-ip", "198.51.100.23", "198.51.100.0"),
    ("x-real-ip", "198.51.100.23", "198.51.100.0"),
    ("fly-client-ip", "198.51.100.23", "198.51.100.0"),
    ("cf-connecting-ip", "2002:cb00:714d::1", "203.0.113.0"),  # 6to4: its IPv4, as everywhere
    ("cloudfront-viewer-address", "::ffff:203.0.113.77:443", "203.0.113.0"),
])
def test_cdn_client_header_names_the_client(name, value, expected):
    s = Settings(trusted_proxies=TRUST.trusted_proxies, headers=(name, "x-forwarded-for"))
    c = client_ip.resolve("10.0.0.1", False, headers(**{name: value, "x_forwarded_for": "1.1.1.1",
                                                        "x_forwarded_proto": "https"}), s)
    assert c.truncated == expected and c.via_proxy and not c.malformed and c.https


def test_cdn_header_is_believed_only_from_a_trusted_peer():
    s = Settings(trusted_proxies=TRUST.trusted_proxies, headers=("cf-connecting-ip",))
    c = client_ip.resolve("127.9.8.7", False, headers(cf_connecting_ip="1.2.3.4", x_forwarded_proto="https"), s)
    assert c.truncated == "127.9.8.0" and c.ignored_headers and not c.via_proxy and not c.https


def test_cdn_header_absent_falls_through_to_the_next_named_header():
    s = Settings(trusted_proxies=TRUST.trusted_proxies, headers=("cf-connecting-ip", "x-forwarded-for"))
    c = client_ip.resolve("10.0.0.1", False, headers(x_forwarded_for="198.51.100.23"), s)
    assert c.truncated == "198.51.100.0" and c.via_proxy


def test_cdn_header_is_not_read_unless_named():
    # The default reads X-Forwarded-For and Forwarded only: a client-sent CF-Connecting-IP that a trusted
    # load balancer passed along is no address of anyone's.
    c = client_ip.resolve("10.0.0.1", False, headers(cf_connecting_ip="1.2.3.4", true_client_ip="1.2.3.4"), TRUST)
    assert c.truncated == "10.0.0.0" and not c.via_proxy


@pytest.mark.parametrize("name,values", [
    ("cf-connecting-ip", ["198.51.100.23, 1.2.3.4"]),  # a list: the client added one
    ("cf-connecting-ip", ["198.51.100.23", "1.2.3.4"]),  # repeated header
    ("true-client-ip", ["garbage"]),
    ("cloudfront-viewer-address", ["198.51.100.23"]),  # no port: not what CloudFront writes
    ("cloudfront-viewer-address", ["198.51.100.23:http"]),
    ("x-real-ip", [""]),
])
def test_cdn_header_that_is_not_one_address_falls_back_to_the_proxy(name, values):
    s = Settings(trusted_proxies=TRUST.trusted_proxies, headers=(name,))
    c = client_ip.resolve("10.0.0.1", False, lambda n: values if n == name else [], s)
    assert c.malformed and c.truncated == "10.0.0.0" and c.via_proxy


def test_header_choices_are_the_schema_enum():
    from privproxy import schema
    assert tuple(schema.node("client_ip.headers").values.enum) == client_ip.HEADER_CHOICES
    assert schema.node("client_ip.headers").default == list(Settings().headers)
    assert set(client_ip.SINGLE_ADDRESS_HEADERS) <= set(client_ip.ADDRESS_HEADERS)


# --- address headers by name and by value (C2, C8) -----------------------------------------------------------
@pytest.mark.parametrize("name", [
    "CloudFront-Viewer-Address", "X-Azure-SocketIP", "X-Azure-ClientIP", "Fly-Client-IP", "CF-Connecting-IPv6",
    "CF-Pseudo-IPv4", "X-Originating-IP", "DO-Connecting-IP", "X-Forwarded-Client-IP", "WL-Proxy-Client-IP",
    "Proxy-Client-IP", "X-Real-IP", "X-Remote-IP", "X-Remote-Addr", "Remote-Addr", "X-Source-IP",
    "X-Client-Public-IP", "True-Client-IP", "Fastly-Client-IP", "X_Forwarded_For", "x_real_ip", "FORWARDED",
])
def test_address_headers_by_name(name):
    assert client_ip.is_address_header(name)


@pytest.mark.parametrize("name", ["User-Agent", "Cookie", "Host", "Referer", "X-Request-Id", "Accept-Language"])
def test_other_headers_are_not_address_headers_by_name(name):
    assert not client_ip.is_address_header(name)


ADDRESS_VALUES = [
    "203.0.113.77", "203.0.113.77:8080", "[2001:db8::1]", "[2001:db8::1]:443", "2001:db8::1", "2001:db8:cafe::17:443",
    '"203.0.113.77"', "'203.0.113.77'", "10.1.2.3, 203.0.113.77", "unknown, 203.0.113.77", " 203.0.113.77 ",
    "for=203.0.113.77", 'for="[2001:db8:cafe::17]:4711";proto=https', "for=_hidden;by=203.0.113.43",
    "By=203.0.113.43", "203.000.113.077", "0xcb.0.0x71.0x4d", "0313.0.0161.0115", "::ffff:203.0.113.77",
    "::ffff:203.000.113.077", "2002:cb00:714d::1", "64:ff9b::203.0.113.77", "fe80::1%eth0", "[fe80::1%25eth0]:80",
    "203.0.113.77/32", "2001:db8::1/128", "1.1 203.0.113.77 (squid)", "client=203.0.113.77; country=JP",
    "(203.0.113.77)", "<203.0.113.77>", "203.0.113.77.", "a=1,b=203.0.113.77",
]


@pytest.mark.parametrize("value", ADDRESS_VALUES)
def test_holds_address(value):
    assert client_ip.holds_address(value)


ORDINARY_HEADERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 "
    "Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 "
    "Edg/120.0.2210.91",
    "MyApp/1.2.3.4567 CFNetwork/1410.0.3 Darwin/22.6.0", "okhttp/4.12.0", "Dalvik/2.1.0 (Linux; U; Android 13; "
    "SM-S918B Build/TP1A.220624.014)",
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "en-US,en;q=0.9", "ja,en-US;q=0.9,en;q=0.8", "gzip, deflate, br, zstd",
    '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"',
    '"Not_A Brand";v="8.0.0.0", "Chromium";v="120.0.6099.109", "Google Chrome";v="120.0.6099.109"',
    '"15.0.0"', '"10.0.0"', '"120.0.6099.109"', "?0", '"Windows"',
    "Tue, 15 Nov 1994 08:12:31 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", "12345", "3405803853", "0",
    "_ga=GA1.2.1234567890.1699999999; _gid=GA1.2.987654321.1700000000; _gcl_au=1.1.1234567890.1700000000",
    "_ga_ABC123=GS1.1.1700000000.1.1.1700000100.0.0.0; _fbp=fb.1.1700000000000.123456789",
    "session=abc123; theme=dark; lang=ja; last=2024-01-15T10:30:45Z",
    "__hstc=12345.abcdef.1700000000000.1700000000000.1700000000000.1; hubspotutk=abcdef0123456789",
    'W/"5e15153d-120f"', '"33a64df551425fcc55e4d42a148795d9f25f89d4"', "max-age=0", "no-cache",
    "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", "application/json; charset=utf-8",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "Basic dXNlcjpwYXNz",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Root=1-67891233-abcdef012345678912345678",
    "105445aa7843bc8bf206b12000100000/1;o=1", "https://shop.example.com", "http://localhost:3000",
    "https://shop.example.com/cart?item=1.2.3&x=4", "shop.example.com:8443", "bytes=0-1023, 2048-4095",
    "u=0, i", "timeout=5, max=1000", "XMLHttpRequest", "1", "same-origin", "navigate", "document",
    "t=1700000000.123", "S1700000000.123456,VS0,VE0", "v1.2.3", "10:30:45", "00:1a:2b:3c:4d:5e",
    "std::vector<int>", "1.0.0.0", "0.0.0.0", "::", "203.0.113.0", "2001:db8::", "sha256=abc:def",
    "Digest username=\"u\", realm=\"r\", uri=\"/a/b.html\", nc=00000001, cnonce=\"0a4f113b\", qop=auth",
]


@pytest.mark.parametrize("value", ORDINARY_HEADERS)
def test_ordinary_headers_hold_no_address(value):
    # Versions, dates, sizes, cookies, tokens; and addresses already at their truncated form (Chrome's
    # reduced 120.0.0.0, GREASE 8.0.0.0, privproxy's own X-Forwarded-For) hold nothing to remove.
    assert not client_ip.holds_address(value)


def test_holds_address_uses_the_configured_truncation():
    assert not client_ip.holds_address("203.0.113.0")
    assert client_ip.holds_address("203.0.113.0", Truncation(ipv4_prefix=16))


def _spelled_v4(n: int):
    parts = [(n >> s) & 255 for s in (24, 16, 8, 0)]
    return st.tuples(*[st.sampled_from([str(p), f"0{p:o}", f"{p:#x}", f"00{p}" if p < 8 else str(p)])
                       for p in parts]).map(".".join)


_V4 = st.integers(0, (1 << 32) - 1).filter(lambda n: n & 255)  # host bits set: not at its /24 form already
_V6 = st.integers(1, (1 << 128) - 1).map(lambda n: str(ipaddress.IPv6Address(n))).filter(
    lambda s: truncate.truncate_text(s) != str(truncate.parse_address(s)))


@st.composite
def address_header_value(draw):
    n = draw(_V4)
    ip = draw(st.sampled_from([
        draw(_spelled_v4(n)), f"::ffff:{draw(_spelled_v4(n))}", f"2002:{n >> 16:x}:{n & 0xFFFF:x}::1",
        f"64:ff9b::{ipaddress.IPv4Address(n)}", draw(_V6),
    ]))
    port = draw(st.integers(1, 65535))
    bracket = ":" in ip
    element = draw(st.sampled_from([
        ip, f"[{ip}]:{port}" if bracket else f"{ip}:{port}", f'"{ip}"', f"for={ip}" if not bracket else f'for="[{ip}]"',
        f"by={ip}" if not bracket else f'by="[{ip}]:{port}"', f"[{ip}]" if bracket else f"({ip})",
    ]))
    others = draw(st.lists(st.sampled_from(["unknown", "for=_hidden", "proto=https", "10.0.0.0", "host=example.com",
                                            "ja", "q=0.9"]), max_size=3))
    at = draw(st.integers(0, len(others)))
    return draw(st.sampled_from([", ", ",", ";", " "])).join(others[:at] + [element] + others[at:])


@settings(max_examples=800, deadline=None)
@given(address_header_value())
def test_holds_address_finds_every_spelling_in_any_position(value):
    assert client_ip.holds_address(value), value


_ORDINARY_PIECES = ["Mozilla/5.0", " ", "(Windows NT 10.0; Win64; x64)", "Chrome/120.0.6099.109", "Chrome/120.0.0.0",
                    "q=0.9", ",", ";", "en-US", "08:12:31", "GMT", "1.2.3", "v=\"8.0.0.0\"", "_ga=GA1.2.123.456",
                    "bytes=0-1023", "12345", "eyJhbGci.eyJzdWIi.c2ln", "https://shop.example.com/a.b", "W/\"5e1-12\""]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_ORDINARY_PIECES), max_size=12), st.sampled_from([" ", ", ", "; "]))
def test_ordinary_header_pieces_never_hold_an_address(pieces, separator):
    value = separator.join(pieces)
    assert not client_ip.holds_address(value), value


_ONE_SETTINGS = Settings()


_ORDINARY_VALUE = st.lists(st.sampled_from(_ORDINARY_PIECES), max_size=6).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(address_header_value(), _ORDINARY_VALUE), min_size=1, max_size=8))
def test_settings_holds_address_is_holds_address_however_often_asked(values):
    # The values that hold no address are remembered (a visitor's headers come back with every request): asked
    # again, and among values that do hold one, the answer is the plain function's.
    for value in values + values:
        assert _ONE_SETTINGS.holds_address(value) == client_ip.holds_address(value), value
    assert all(isinstance(k, int) for k in _ONE_SETTINGS._without_address._seen)  # keyed hashes, never the values


def test_settings_holds_address_memory_is_bounded_and_per_truncation():
    s = Settings()
    for i in range(s._without_address.size + 10):
        assert not s.holds_address(f"Mozilla/5.0 build.{i}")
    assert 0 < len(s._without_address) <= s._without_address.size
    long_value = "v1.2 " * 300
    assert not s.holds_address(long_value) and hash(long_value) not in s._without_address._seen
    assert not s.holds_address("203.0.113.0")  # already at its /24
    wider = dataclasses.replace(s, truncation=Truncation(ipv4_prefix=16))  # what s remembered is not for it
    assert not wider._without_address and wider.holds_address("203.0.113.0")
