"""The offline log filter: same rules as live traffic, unparsable lines never pass (issue 6, item 5)."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import policy, truncate
from privproxy.offline import LogFilter

POLICY = """
version: 1
rules:
  - {id: click, action: drop, scopes: [query], names: [gclid]}
  - {id: mail, action: redact, scopes: [query], names: [email]}
  - {id: ids, action: hash, scopes: [query], names: [uid]}
sensitive_paths:
  - {id: health, pattern: /health/**}
"""

NGINX = ('203.0.113.77 - jane [22/Nov/2026:10:00:00 +0900] "GET /p?q=watch&gclid=EAIa1&email=j%40example.com '
         'HTTP/1.1" 200 5123 "https://ref.example/health/x?email=a@b.example" "Mozilla/5.0 (X11; Linux x86_64; '
         'rv:121.0) Gecko/20100101 Firefox/121.0"\n')


def test_combined_line_scrubbed_field_by_field(policy_from_yaml):
    f = LogFilter(policy_from_yaml(POLICY), "combined")
    out = f.line(NGINX)
    assert out == ('203.0.113.0 - - [22/Nov/2026:10:00:00 +0900] "GET /p?q=watch&email=[redacted] HTTP/1.1" 200 '
                   '5123 "https://ref.example/health/*" "Firefox 121 (Linux)"\n')
    assert f.stats.rules["click"] == 1 and f.stats.rules["remote_user"] == 1


def test_common_log_format_ipv6_and_trailing_fields(policy_from_yaml):
    f = LogFilter(policy_from_yaml(POLICY), "combined")
    assert f.line('2001:db8:abcd:12::7 - - [01/Jan/2026:00:00:00 +0000] "GET /health/a/b HTTP/2.0" 200 -\n') == \
        '2001:db8:abcd:: - - [01/Jan/2026:00:00:00 +0000] "GET /health/* HTTP/2.0" 200 -\n'
    out = f.line('198.51.100.9 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8.0" '
                 '"198.51.100.200, 10.0.0.7" rt=0.003\n')
    assert "198.51.100.200" not in out and "198.51.100.0, 10.0.0.0" in out and "rt=0.003" in out


def test_unparsable_lines_never_pass(policy_from_yaml):
    f = LogFilter(policy_from_yaml(POLICY), "combined")
    bad = ["jane@example.com visited /p\n", '203.0.113.7 - - [x] "GET /p?email=a@b.example HTTP/1.1" 2000 1\n', "\n"]
    assert [f.line(b) for b in bad] == [None, None, None]
    assert f.stats.unparsed == 3 and f.stats.reasons["not_combined"] == 3
    # A request field that is not a request line (a TLS handshake on port 80) is replaced, the line kept.
    out = f.line('10.1.2.3 - - [01/Jan/2026:00:00:00 +0000] "\\x16\\x03\\x01 a@b.example" 400 150 "-" "-"\n')
    assert out == '10.1.2.0 - - [01/Jan/2026:00:00:00 +0000] "-" 400 150 "-" "-"\n'


def test_host_names_in_the_host_field_are_removed(policy_from_yaml):
    f = LogFilter(policy_from_yaml(POLICY), "combined")
    out = f.line('customer-42.isp.example - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1\n')
    assert out.startswith("- - - [")


def test_json_lines_nginx_and_caddy(policy_from_yaml):
    f = LogFilter(policy_from_yaml(POLICY), "json")
    nginx = {"remote_addr": "203.0.113.77", "remote_user": "jane", "request": "GET /p?uid=42&gclid=x HTTP/1.1",
             "status": 200, "http_referer": "https://a.example/?email=j@example.com", "http_user_agent": "curl/8.1.0",
             "http_x_forwarded_for": "198.51.100.1, 10.0.0.1", "note": "call 090-1234-5678"}
    got = json.loads(f.line(json.dumps(nginx)))
    assert got["remote_addr"] == "203.0.113.0" and "remote_user" not in got
    assert got["request"].startswith("GET /p?uid=pp_") and "gclid" not in got["request"]
    assert got["http_referer"] == "https://a.example/?email=[redacted]"
    assert got["http_x_forwarded_for"] == "198.51.100.0, 10.0.0.0"
    assert got["note"] == "call [phone]" and got["status"] == 200
    caddy = {"request": {"remote_ip": "2001:db8:1:2::3", "remote_port": "51234", "uri": "/health/x?email=a@b.example",
                         "headers": {"Cookie": ["sid=1"], "User-Agent": ["curl/8.1.0"], "Authorization": ["Bearer x"]}}}
    got = json.loads(f.line(json.dumps(caddy)))["request"]
    assert got["remote_ip"] == "2001:db8:1::" and "remote_port" not in got and got["uri"] == "/health/*"
    assert set(got["headers"]) == {"User-Agent"}
    assert f.line("{broken") is None and f.line("[1, 2]") is None and f.stats.unparsed == 2


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 96))
def test_fast_address_paths_agree_with_ipaddress(v6, v4, p4, p6):
    t = truncate.Truncation(ipv4_prefix=p4, ipv6_prefix=p6)
    for text in (str(ipaddress.IPv6Address(v6)), str(ipaddress.IPv4Address(v4)),
                 f"::ffff:{ipaddress.IPv4Address(v4)}"):
        ip = truncate.parse_ip(text)
        assert truncate.truncate_text(text, t) == truncate.truncate_ip(ip, t), text


_TOKENS = ["203.0.113.7", "2001:db8::1", "-", "jane", " ", '"', "\\", "[", "]", "22/Nov/2026:10:00:00 +0900", "GET",
           "/p?q=1&gclid=x&uid=7", "HTTP/1.1", "200", "512", "https://r.example/?email=a%40b.example", "curl/8.1.0",
           "x", "\t", "\\x22"]
_LINE = ('{h} {i} {u} [{t}] "{m} {target} {proto}" {status} {size} "{ref}" "{agent}"')


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=24).map("".join),
    st.fixed_dictionaries({k: st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=3).map("".join)
                           for k in ("h", "i", "u", "t", "m", "target", "proto", "status", "size", "ref", "agent")}
                          ).map(lambda d: _LINE.format(**d)),
))
def test_the_quote_splitting_fast_path_agrees_with_the_full_expression(line):
    rules = policy.from_text(POLICY, "test.yaml", secret=b"unit-test-secret")
    fast, full = LogFilter(rules, "combined"), LogFilter(rules, "combined")
    assert fast.line(line) == full._combined_regex(line)
    assert fast.stats == full.stats
