"""Minimum automatic acquisition: user agent, screen and URL generalization (C9; 004 automatic acquisition)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from privproxy import generalize
from tests.helpers import REPO

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
    # named crawlers keep their family (ua-parser's crawler list), and say they are one
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "Googlebot 2 (bot)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)": "bingbot 2 (bot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)":
        "GPTBot 1 (bot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)": "FacebookBot 1 (bot)",
    # in-app browsers keep theirs
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBDV/iPhone14,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]": "Facebook (iOS)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Instagram 307.0.0.34.111 (iPhone14,2; iOS 17_1; en_US; en; scale=3.00; 1170x2532; 531680476)":
        "Instagram 307 (iOS)",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
    "Chrome/119.0.6045.163 Mobile Safari/537.36 MicroMessenger/8.0.43.2480(0x28002B37) NetType/WIFI "
    "Language/zh_CN": "WeChat 8 (Android)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Safari Line/13.20.0": "LINE 13 (iOS)",
    "curl/8.5.0": "curl 8 (Other)",
    "": "",
}


@pytest.mark.parametrize("ua,expected", UA.items())
def test_user_agent(ua, expected):
    assert generalize.user_agent(ua) == expected


@pytest.mark.parametrize("ua,bot", [(ua, "(bot)" in out) for ua, out in UA.items()])
def test_crawlers_are_marked(ua, bot):
    assert generalize.agent(ua).bot is bot


@pytest.mark.parametrize("ua", ["Mozilla/5.0 (compatible; jane.doe.5551234bot/1.0)",
                                "Mozilla/5.0 (compatible; " + "x" * 60 + "bot/1.0)", "Mozilla/5.0 \udcff\udcfe"])
def test_a_family_copied_from_the_agent_never_carries_its_text(ua):
    # ua-parser's `(\w+)bot` rules copy the sender's text into the family: only product-like names are kept
    out = generalize.user_agent(ua)
    assert "5551234" not in out and "xxxxxxxx" not in out and out in ("Bot (bot)", "Other (Other)")


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


@pytest.mark.parametrize("load", ["policy.default()", "policy.load('filters.yaml')"])
def test_loading_the_rules_readies_ua_parser_before_the_first_record(load):
    """ua-parser compiles its regexes on first use (about 0.15 s): the built-in rules and a file alike have that
    done when the policy is loaded, not on the first request's record. A fresh interpreter, so that nothing else
    in this test run has warmed it."""
    code = ("import sys, ua_parser; from privproxy import policy; assert 'parser' not in vars(ua_parser); "
            f"{load}; sys.exit(0 if 'parser' in vars(ua_parser) else 3)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PRIVPROXY_SECRET": "t"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
