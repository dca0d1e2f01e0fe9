"""Minimum automatic acquisition: user agent, screen and URL generalization (C9; 004 automatic acquisition)."""

from __future__ import annotations

import pytest

from privproxy import generalize

UA = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 "
    "Safari/537.36": "Chrome 120 (Windows)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36 Edg/120.0.2210.91": "Edge 120 (Windows)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
    "Safari/605.1.15": "Safari 17 (macOS)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0": "Firefox 121 (Linux)",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 "
    "Mobile Safari/537.36": "Chrome 120 (Android)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "Bot (Other)",
    "curl/8.5.0": "curl 8 (Other)",
    "": "",
}


@pytest.mark.parametrize("ua,expected", UA.items())
def test_user_agent(ua, expected):
    assert generalize.user_agent(ua) == expected


@pytest.mark.parametrize("given,expected", [("1536x864", "1920x1024"), ("390x844", "414x1024"),
                                            ("5120x2880", "3840x3840"), ("wide", None)])
def test_screen(given, expected):
    assert generalize.screen(given) == expected


def test_path_template():
    assert generalize.path_template("/orders/12345/items/9f8e7d6c5b4a39281706?x=1") == "/orders/:id/items/:hash"
    assert generalize.path_template("/u/123e4567-e89b-12d3-a456-426614174000/j@x.org") == "/u/:uuid/:email"
    assert generalize.path_template("/products/watch-classic") == "/products/watch-classic"


def test_timestamp():
    assert generalize.timestamp("1700000123") == "1699999200"
    assert generalize.timestamp("1700000123456") == "1699999200000"
    assert generalize.timestamp("2024-01-15T10:31:22Z") == "2024-01-15T10:00:00+00:00"
    assert generalize.timestamp("lunch") is None
