"""Client address resolution: trusted proxies only, right-to-left walk, spoofing ignored (C2, C15; 000 §3)."""

from __future__ import annotations

import pytest

from privproxy import client_ip
from privproxy.client_ip import Settings


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
