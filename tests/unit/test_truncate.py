"""IP truncation: 004 treats IP addresses as personal information; 001 §9.2.1 logs must not identify (C2, C8)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import truncate
from privproxy.truncate import Truncation


@pytest.mark.parametrize("given,expected", [
    ("127.9.8.7", "127.9.8.0"),
    ("203.0.113.255", "203.0.113.0"),
    ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
    ("[2001:db8:abcd:12::1]", "2001:db8:abcd::"),
    ("::ffff:198.51.100.77", "198.51.100.0"),  # IPv4-mapped is IPv4: /48 of it would keep every bit
    ("fe80::1%eth0", "fe80::"),
    ("0.0.0.0", "0.0.0.0"),
])
def test_truncate_defaults(given, expected):
    assert truncate.truncate_text(given) == expected


# Every IPv6 form that carries an IPv4 address is that IPv4 client (203.0.113.77 = cb00:714d throughout).
EMBEDDED = [
    ("2002:cb00:714d::1", "6to4"),  # the example: /48 kept all of 203.0.113.77
    ("2002:cb00:714d:abcd:1:2:3:4", "6to4 with a subnet and host"),
    ("::ffff:203.0.113.77", "mapped"),
    ("::ffff:cb00:714d", "mapped, hex"),
    ("::203.0.113.77", "compatible"),
    ("::cb00:714d", "compatible, hex"),
    ("::ffff:0:203.0.113.77", "SIIT translated"),
    ("64:ff9b::203.0.113.77", "NAT64 well-known prefix"),
    ("64:ff9b::cb00:714d", "NAT64, hex"),
    ("64:ff9b:1:abcd::cb00:714d", "NAT64 local-use"),
    ("2001:0:4136:e378:8000:63bf:34ff:8eb2", "Teredo: the client is the inverted last 32 bits"),
    ("2001::ffff:ffff:34ff:8eb2", "Teredo, compressed"),
    ("[::ffff:203.0.113.77]:443", "mapped, bracketed with a port"),
    ("::FFFF:203.0.113.77", "upper case"),
]


@pytest.mark.parametrize("text,_why", EMBEDDED)
@pytest.mark.parametrize("t,expected", [
    (Truncation(), "203.0.113.0"),
    (Truncation(ipv4_prefix=16, ipv6_prefix=48), "203.0.0.0"),
    (Truncation(ipv4_prefix=24, ipv6_prefix=128), "203.0.113.0"),  # not the full IPv6, even at /128
    (Truncation(ipv4_prefix=24, ipv6_prefix=100), "203.0.113.0"),  # past the fast path's /96 limit
])
def test_ipv6_embedding_ipv4_is_truncated_as_its_ipv4(text, _why, t, expected):
    assert truncate.truncate_text(text, t) == expected
    ip = truncate.parse_address(text)
    assert ip == ipaddress.IPv4Address("203.0.113.77") and truncate.family(ip) == "ipv4"
    assert truncate.truncate_ip(ip, t) == expected


def test_everything_that_parses_an_address_unmaps_it():
    # parse_ip is what client_ip, the PROXY protocol, geo and the log use: all of them see the IPv4 client.
    for text, _ in EMBEDDED:
        if "[" not in text:
            assert truncate.parse_ip(text) == ipaddress.IPv4Address("203.0.113.77"), text
    assert truncate.unmap(ipaddress.IPv6Address("2002:cb00:714d::1")) == ipaddress.IPv4Address("203.0.113.77")
    assert truncate.truncate_ip(ipaddress.IPv6Address("2002:cb00:714d::1")) == "203.0.113.0"


@pytest.mark.parametrize("text,expected", [
    ("::1", "::"), ("::", "::"),  # loopback and unspecified are not IPv4-compatible addresses
    ("2001:db8::1", "2001:db8::"),  # documentation prefix, not Teredo (2001:0::/32)
    ("2003:cb00:714d::1", "2003:cb00:714d::"),  # next to 6to4, ordinary
    ("64:ff9b:2::cb00:714d", "64:ff9b:2::"),  # outside the local-use /48
])
def test_ordinary_ipv6_neighbours_stay_ipv6(text, expected):
    assert truncate.truncate_text(text) == expected


@pytest.mark.parametrize("text", ["fe80::200:5efe:203.0.113.77", "2001:db8:1:2:0:5efe:cb00:714d",
                                  "2001:db8:1:2:200:5efe:cb00:714d", "2001:db8:1:2:300:5efe:cb00:714d"])
def test_isatap_keeps_at_most_its_64_bit_prefix(text):
    # ISATAP's interface id is the host's IPv4 (often private, behind the site prefix): the routing prefix
    # is kept as for any IPv6 client, the interface id never, whatever ipv6_prefix says.
    ip = ipaddress.IPv6Address(text)
    for prefix in (48, 64, 96, 128):
        out = truncate.truncate_text(text, Truncation(ipv6_prefix=prefix))
        assert out == str(ipaddress.IPv6Network(f"{text}/{min(prefix, 64)}", strict=False).network_address)
        assert ipaddress.IPv6Address(out).packed[8:] == bytes(8)
        assert truncate.truncate_ip(ip, Truncation(ipv6_prefix=prefix)) == out


@pytest.mark.parametrize("text", [
    "203.0.113.77", "203.000.113.077", "0313.0.0161.0115", "0xcb.0.0x71.0x4d",
    "0XCB.0X0.0X71.0X4D", "0xcb.00.0x71.77", "203.0.113.77.", "000000000000000313.0.113.77", " 203.0.113.77 ",
    '"203.0.113.77"', "203.0.113.77:8080", "[203.0.113.77]", "::ffff:203.000.113.077", "::ffff:0xcb.0.0x71.0x4d",
    "[::ffff:203.0.113.77]:8080", "2002:cb00:714d::1%eth0", "[2002:cb00:714d::1%25eth0]:443", "203.0.113.089",
])
def test_every_spelling_of_an_address_is_truncated(text):
    # inet_aton (glibc) and the WHATWG URL parser read 0x.. as hex and 0.. as octal; a leading zero that
    # cannot be octal is read as decimal (MySQL, old Python). Either way no host bit survives a /24.
    out = truncate.truncate_text(text)
    assert out is not None and out.startswith("203.0.") and out.endswith(".0"), (text, out)


@pytest.mark.parametrize("text", ["3405803853", "0xcb00714d", "0XCB00714D", "031300070515", "203.29005",
                                  "203.0.29005", "0xcb.0x714d", "0xcb.0.0x714d"])
def test_single_number_forms_only_where_an_address_is_expected(text):
    # A beacon's ip role holds an address, so 3405803853 there is 203.0.113.77 as inet_aton reads it; in any
    # other value it is a count, a size or a timestamp.
    assert truncate.truncate_text(text, numeric=True) == "203.0.113.0"
    assert truncate.truncate_text(text) is None


@pytest.mark.parametrize("bad", ["", "999.1.1.1", "example.com", "::g", "1.2.3.4:http", "1.2.3.4:", "1..2.3",
                                 "1.2.3.4.5", "0x1g.0.0.0", "1.2.3.256", "4294967296", "1.2.3.4/24", "１.２.３.４",
                                 "[1:2::3", "1:2:3:4:5:6:7:8:9", "10:30:45", "1_000", "+1.2.3.4", "-1", "1.2.3.04a"])
def test_not_an_address(bad):
    assert truncate.truncate_text(bad) is None
    assert truncate.truncate_text(bad, numeric=True) is None


def test_short_dotted_forms_are_addresses_only_where_one_is_expected():
    assert truncate.truncate_text("1.2.3") is None  # a version in free text
    assert truncate.truncate_text("1.2.3", numeric=True) == "1.2.0.0"  # 1.2.0.3 to inet_aton


def test_configurable_prefixes():
    t = Truncation(ipv4_prefix=16, ipv6_prefix=32)
    assert truncate.truncate_text("10.20.30.40", t) == "10.20.0.0"
    assert truncate.truncate_text("2001:db8:abcd::1", t) == "2001:db8::"
    assert truncate.truncate_text("0xa.20.30.40", t) == "10.20.0.0"


def test_mask_ips_in_text():
    text = "client 127.9.8.7:5555 and [2001:db8:1:2::9]:443 said hi; version 1.2.3 stays, 120.0.6099.109 too"
    out = truncate.mask_ips(text)
    assert "127.9.8.0:5555" in out and "2001:db8:1::" in out
    assert "127.9.8.7" not in out and "2001:db8:1:2::9" not in out
    assert "version 1.2.3" in out and "120.0.6099.109" in out


@pytest.mark.parametrize("text,expected", [
    ("ip=::ffff:203.0.113.77&x=1", "ip=203.0.113.0&x=1"),  # was masked to ::.0.113.77
    ("from ::ffff:203.0.113.77.", "from 203.0.113.0."),
    ("a 203.000.113.077 b", "a 203.0.113.0 b"),
    ("a 0xcb.0.0x71.0x4d b", "a 203.0.113.0 b"),
    ("a 0313.0.0161.0115 b", "a 203.0.113.0 b"),
    ("[2002:cb00:714d::1]:443", "[203.0.113.0]:443"),
    ("via 2001:0:4136:e378:8000:63bf:34ff:8eb2", "via 203.0.113.0"),
    ("fe80::1%eth0 up", "fe80::%eth0 up"),
    ("[::ffff:203.000.113.077]", "[203.0.113.0]"),
    ("x 3405803853 and 0xcb00714d stay", "x 3405803853 and 0xcb00714d stay"),  # bare numbers: not in free text
    ("10:30:45 and Chrome/120.0.6099.109", "10:30:45 and Chrome/120.0.6099.109"),
])
def test_mask_ips_every_spelling(text, expected):
    assert truncate.mask_ips(text) == expected


_EMBED_PREFIXES = ["::ffff:0:0/96", "::/96", "::ffff:0:0:0/96", "2002::/16", "64:ff9b::/96", "64:ff9b:1::/48",
                   "2001::/32", "2001:db8::/32", "fe80::/10", "::/0"]


@st.composite
def ipv6(draw):
    net = ipaddress.IPv6Network(draw(st.sampled_from(_EMBED_PREFIXES)))
    host = draw(st.integers(0, (1 << (128 - net.prefixlen)) - 1))
    ip = ipaddress.IPv6Address(int(net.network_address) | host)
    if draw(st.booleans()):  # an ISATAP interface id behind any prefix
        ip = ipaddress.IPv6Address((int(ip) & ~((1 << 64) - 1)) | (0x5EFE << 32) | (int(ip) & 0xFFFFFFFF))
    return ip


@settings(max_examples=500, deadline=None)
@given(ipv6(), st.integers(0, 32), st.integers(0, 128), st.sampled_from([str, lambda ip: ip.exploded]))
def test_fast_path_agrees_with_the_full_parser(ip, v4, v6, spell):
    # truncate_text's C-library fast path and truncate_ip must give the same string for every address.
    t = Truncation(ipv4_prefix=v4, ipv6_prefix=v6)
    expected = truncate.truncate_ip(ip, t)
    assert truncate.truncate_text(spell(ip), t) == expected
    assert truncate.truncate_text(f"[{ip}]:8080", t) == expected
    v4ip = truncate.unmap(ip)
    if v4ip.version == 4:  # no more of the IPv4 address survives than its own prefix
        assert expected == truncate.truncate_ip(v4ip, t)


def _spellings(n: int):
    """inet_aton spellings of one IPv4 address, part by part."""
    parts = [(n >> s) & 255 for s in (24, 16, 8, 0)]
    return st.tuples(*[st.sampled_from([str(p), f"0{p:o}", f"{p:#x}", f"{p:#X}", f"00{p}" if p < 8 else str(p),
                                        f"0x{p:04x}"]) for p in parts]).map(".".join)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, (1 << 32) - 1).flatmap(lambda n: st.tuples(st.just(n), _spellings(n))),
       st.sampled_from(["{}", "::ffff:{}", "[::ffff:{}]:443", "{}:80"]),
       st.text(alphabet=" ,;=()/\"'", max_size=3), st.text(alphabet=" ,;=()/\"'", max_size=3))
def test_any_spelling_inside_text_is_masked_to_the_canonical_truncation(n_text, form, before, after):
    n, spelled = n_text
    address = form.format(spelled)
    expected = truncate.truncate_ip(ipaddress.IPv4Address(n))
    assert truncate.truncate_text(address) == expected
    masked = truncate.mask_ips(f"{before}{address}{after}")
    assert masked == f"{before}{form.format(expected).removeprefix('::ffff:').replace('[::ffff:', '[')}{after}"
