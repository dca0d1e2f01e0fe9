"""Request heads that RFC 9110/9112 forbid are refused; hosts are compared as virtual hosts compare them."""

from __future__ import annotations

import pytest

from privproxy import wire


@pytest.mark.parametrize("method, fields, hosts, reason", [
    ("GET", [("host", "a"), ("accept", "*/*")], 1, None),
    ("GET", [("user-agent", "Mozilla/5.0\t(X11)")], 1, None),  # HTAB is allowed inside a value
    ("GET", [("x", "caf\xe9")], 1, None),  # obs-text
    ("G ET", [], 1, "bad_method"),
    ("GET\r", [], 1, "bad_method"),
    ("GET", [("host", "a"), ("host", "b")], 2, "duplicate_host"),
    ("GET", [("x y", "1")], 1, "bad_header_name"),
    ("GET", [("x", "a\r\n b")], 1, "bad_header_value"),  # obs-fold, as mitmproxy joins it
    ("GET", [("x", "a\rb")], 1, "bad_header_value"),  # bare CR
    ("GET", [("x", "a\x00b")], 1, "bad_header_value"),
    ("GET", [("x", "a\x1bb")], 1, "bad_header_value"),
])
def test_check_head(method, fields, hosts, reason):
    assert wire.check_head(method, fields, hosts) == reason


@pytest.mark.parametrize("value, canonical", [
    ("shop.example.com", "shop.example.com"),
    ("Shop.Example.COM", "shop.example.com"),
    ("shop.example.com.", "shop.example.com"),  # nginx drops the trailing dot before matching server_name
    ("shop.example.com:8443", "shop.example.com:8443"),
    ("[::1]:8443", "[::1]:8443"),
    ("127.0.0.1", "127.0.0.1"),
    ("host:1:2", None),
    ("shop example", None),
    ("a..b", None),
    ("a/b", None),
    ("h:99999", None),
    ("", None),
    ("@evil", None),
])
def test_canonical_host(value, canonical):
    assert wire.canonical_host(value) == canonical


def test_host_name():
    assert wire.host_name("shop.example.com:8443") == "shop.example.com"
    assert wire.host_name("[::1]:80") == "::1"
