"""IP truncation: 004 treats IP addresses as personal information; 001 §9.2.1 logs must not identify (C2, C8)."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("bad", ["", "999.1.1.1", "1.2.3", "example.com", "::g", "1.2.3.4:80"])
def test_not_an_address(bad):
    assert truncate.truncate_text(bad) is None


def test_configurable_prefixes():
    t = Truncation(ipv4_prefix=16, ipv6_prefix=32)
    assert truncate.truncate_text("10.20.30.40", t) == "10.20.0.0"
    assert truncate.truncate_text("2001:db8:abcd::1", t) == "2001:db8::"


def test_mask_ips_in_text():
    text = "client 127.9.8.7:5555 and [2001:db8:1:2::9]:443 said hi; version 1.2.3 stays, 120.0.6099.109 too"
    out = truncate.mask_ips(text)
    assert "127.9.8.0:5555" in out and "2001:db8:1::" in out
    assert "127.9.8.7" not in out and "2001:db8:1:2::9" not in out
    assert "version 1.2.3" in out and "120.0.6099.109" in out
