"""The offline log filter: same rules as live traffic, unparsable lines never pass (issue 6, item 5)."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import detectors, log_filter, pipeline, policy, truncate, vendors
from privproxy import target as targets
from privproxy.access_log import formats
from privproxy.cli.filter_log import with_site_hosts
from privproxy.log_filter import LogFilter
from privproxy.outcome import Outcome
from tests.helpers import REPO

POLICY = """
version: 1
sites: {default: {hosts: [ref.example, a.example]}}  # referrers from these are internal: path and query kept, scrubbed
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


def test_json_records_of_crawlers_say_bot_as_the_proxys_do(policy_from_yaml):
    f = LogFilter(policy_from_yaml(POLICY), "json")
    crawler = {"http_user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
               "request": {"headers": {"User-Agent": "GPTBot/1.1 (+https://openai.com/gptbot)"}}}
    got = json.loads(f.line(json.dumps(crawler)))
    assert got["http_user_agent"] == "Googlebot 2 (bot)" and got["bot"] is True
    caddy = {"request": {"headers": {"User-Agent": ["GPTBot/1.1 (+https://openai.com/gptbot)"]}}, "status": 200}
    got = json.loads(f.line(json.dumps(caddy)))
    assert got == {"request": {"headers": {"User-Agent": ["GPTBot 1 (bot)"]}}, "status": 200, "bot": True}
    person = {"user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                            "Chrome/120.0.0.0 Safari/537.36", "status": 200}
    got = json.loads(f.line(json.dumps(person)))
    assert got == {"user_agent": "Chrome 120 (Windows)", "status": 200}  # no "bot" key, as in the proxy's records


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
# fields that are mostly what they should be, so that most lines take the fast path and a few just miss it
_USUAL = {"h": ["203.0.113.7", "2001:db8::1", "host-1", "a\x85b", "a\tb", '"', "10.0.0.255", "255.255.255.25",
                "01.2.3.4", "1.2.3.04", "256.1.2.3", "1.2.3.256", "1.2.3.4.5", "1.2.3", "1.2.3.4x", "١.2.3.4"],
          "i": ["-", "x", "-\xa0"],
          "u": ["-", "jane", "ü"], "t": ["22/Nov/2026:10:00:00 +0900", "", "a]b", 'a"b', "[x"],
          "m": ["GET", "POST", "M-SEARCH", "get", "GET2", "A" * 21], "target": ["/", "/p?q=1&gclid=x&uid=7", "/a b",
          "/ü", '/"', "/\x7f", "*", "http://x.example/p"], "proto": ["HTTP/1.1", "HTTP/2", "HTTP/1.10", "HTTP/3 "],
          "status": ["200", "-", "20", "٣٠٠", "2000"], "size": ["512", "-", "", "٣", "1 2"],
          "ref": ["-", "", "https://r.example/?email=a%40b.example", 'a"b', "x\\"],
          "agent": ["curl/8.1.0", "-", "", '"', "a\x85"]}


@settings(max_examples=600, deadline=None)
@given(st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=24).map("".join),
    st.fixed_dictionaries({k: st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=3).map("".join)
                           for k in ("h", "i", "u", "t", "m", "target", "proto", "status", "size", "ref", "agent")}
                          ).map(lambda d: _LINE.format(**d)),
    st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _USUAL.items()}).map(lambda d: _LINE.format(**d)),
    st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _USUAL.items() if k not in ("ref", "agent")}).map(
        lambda d: _LINE.format(ref="", agent="", **d).rpartition(' ""')[0].rpartition(' ""')[0]),  # Common
))
def test_the_usual_line_fast_path_agrees_with_the_full_expression(line):
    rules = policy.from_text(POLICY, "test.yaml", secret=b"unit-test-secret")
    fast, full = LogFilter(rules, "combined"), LogFilter(rules, "combined")
    assert fast.line(line) == full._combined_regex(line)
    assert fast.stats == full.stats
    # and a block of them, as the command reads its input (CRLF line ends too)
    block, rejected = log_filter.filter_block(LogFilter(rules, "combined"), f"{line}\n{line}\r\n".encode())
    expected = full._combined_regex(line)
    assert block.decode() == ("" if expected is None else expected * 2)
    assert rejected == ([] if expected is not None else [f"{line}\n", f"{line}\r\n"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["GET", "POST", "get", "M-SEARCH", " ", "  ", "/", "/p?q=1", "\t", "\x0b", "\x1f",
                                 "\x7f", "\x85", "\xa0", "ü", "HTTP/1.1", "HTTP/2", "HTTP/1.10", "HTTP/3", "\n", "x"]),
                max_size=7).map("".join))
def test_request_lines_read_without_the_expression_as_with_it(text):
    m = log_filter._REQUEST.match(text)
    got = log_filter.request_line(text)
    assert (tuple(got) if got is not None else None) == (m.groups() if m else None)


# --- filter-log says what the proxy's access log says (issue 18, item 2) -------------------------------------
# The proxy logs `policy.scrubber.to("log").url(...)` of the target as it read it (origin-form; a beacon's
# collection path alone) and of the referrer (pipeline.log_record); filter-log's fast path must give the same
# text for the same target and referrer, with the shipped rules: the oracle is the pipeline itself. The
# generators follow issue 17: path spellings nginx reads as another path, identifier names in every spelling
# style, values that are identifiers elsewhere in the same URL (echoes), nested URLs.
SHIPPED = policy.from_text((REPO / "filters.yaml").read_text(encoding="utf-8"), "filters.yaml",
                           secret=b"filter-log-equality")
# The proxy keeps the path of referrers from the request's own Host (referrer.internal) and cuts the others to
# their origin (referrer.external); filter-log reads no Host and is told the site's with --site-host.
_SITE = with_site_hosts(SHIPPED, ["shop.example"])
_FILTERS = {fmt: LogFilter(_SITE, fmt) for fmt in ("combined", "json")}  # warm caches across examples
_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
_SEGMENTS = ["p", "products", "watch-42", "cart", "search", "g", "collect", "news", "ja", "static", "app.4f2.js",
             "index.html", "health", "HEALTH", "Health", "h%65alth", "%68EALTH", "heal%74h", "medical", "recruit",
             "careers", "apply", "inquiry", "clinic-7", "東京", "%E6%9D%B1", "%C3%BC", "a+b", "~user", "x:y", "@me"]
_ODD_SEGMENTS = [".", "..", "%2e", "%2E%2e", ".%2E", "", "a%2Fb", "%2Fhealth%2Fx", "..%2F", "%2e%2e%2fhealth",
                 "jane@example.com", "jane%40example.com", "090-1234-5678", "203.0.113.77", "2001:db8:abcd:12::7",
                 "::ffff:203.0.113.77", _JWT, "4111111111111111", "https%3A%2F%2Fx.example%2Fp%3Fuid%3Dmember-1234",
                 "%zz", "%", "%00", "%ff", "a%20b"]
_MATRIX = ["jsessionid=0123456789ABCDEF", "JSESSIONID=abc12345", "x", "uid=member-12345", "email=jane@example.com",
           "v=1;jsessionid=XYZ12345678", "phpsessid=s3cr3t99", "", "gclid=EAIaIQ1234"]
_ID_NAMES = ["uid", "UID", "Uid", "userId", "user_id", "user-id", "USER_ID", "user[id]", "user%5Bid%5D", "uid[]",
             "uid[0]", "uid%5B%5D", "User.Id", "customerId", "memberID", "member-id", "visitorId", "client_id", "cid",
             "deviceId", "anonymousId", "anonymous_id", "distinct_id", "u%69d", "user+id", "Device-ID"]
_CLICK_NAMES = ["gclid", "GCLID", "fbclid", "msclkid", "gcl%69d", "_gl", "ttclid", "wbraid", "mc_eid"]
_CONTACT_NAMES = ["email", "Email", "e-mail", "e_mail", "mail", "tel", "phone", "phoneNumber", "phone_number",
                  "first_name", "firstName", "zip", "dob", "e%2Dmail"]
_SECRET_NAMES = ["token", "access_token", "accessToken", "sessionid", "sessionId", "session_id", "jsessionid",
                 "JSESSIONID", "PHPSESSID", "sid", "code", "state", "X-Amz-Signature", "x-amz-credential", "apiKey"]
_OTHER_NAMES = ["q", "page", "ref", "next", "url", "redirect", "e_n", "label", "utm_source", "sr", "vp", "res",
                "lang", "", "a+b", "%20uid", "$anon_distinct_id", "Q", "u", "idx"]
_VALUES = ["watch", "2", "", "1920x1080", "jane@example.com", "jane%40example.com", "JANE%2540EXAMPLE.COM",
           "090-1234-5678", "%2B81%2090%201234%205678", "+81+90+1234+5678", "203.0.113.77", "2001:db8:abcd:12::7",
           "%3A%3Affff%3A203.0.113.77", "::ffff:203.0.113.77", "0xcb.0.113.77", _JWT, "4111111111111111",
           "[redacted]", "%5Bredacted%5D", "null", "undefined", "ja-JP", "Mozilla%2F5.0+(X11;+Linux+x86_64)", "東京",
           "%E6%9D%B1%E4%BA%AC", "%ff%fe", "%", "a=b", "GA1.1.918273645.1700000000",
           "https%3A%2F%2Fshop.example%2Fp%3Fuid%3Dmember-12345%26email%3Djane%2540example.com",
           "https://shop.example/p?gclid=EAIa12345&q=1", "/health/x?uid=1", "%2Fhealth%2Fx", "//evil.example/p",
           "https://u:pw@h.example/", "/p;jsessionid=ABC12345?x=1"]
_IDS = st.text(alphabet="abcdefXYZ0123456789-_.~", min_size=4, max_size=14)


@st.composite
def _paths(draw) -> str:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        seg = draw(st.one_of(st.sampled_from(_SEGMENTS), st.sampled_from(_ODD_SEGMENTS),
                             st.text(alphabet="abcXYZ019-._~%:@!$'()*,+=", max_size=8)))
        if draw(st.integers(0, 5)) == 0:
            seg += ";" + draw(st.sampled_from(_MATRIX))
        out.append(draw(st.sampled_from(["/", "/", "/", "//", "\\", "/./", "/%2F"])) + seg)
    path = "".join(out) or "/"
    return path + ("/" if draw(st.booleans()) else "")


@st.composite
def _queries(draw) -> str:
    ids = draw(st.lists(st.one_of(_IDS, st.sampled_from(["member-12345", "EAIaIQobChMI", "jane@example.com",
                                                         "0123456789abcdef", "GA1.1.918273645.1700000000"])),
                        min_size=1, max_size=3))

    def value() -> str:
        kind = draw(st.integers(0, 9))
        if kind < 4:  # an identifier, or a copy of one as SDKs and pages send them
            v = draw(st.sampled_from(ids))
            form = draw(st.sampled_from(["{}", "{}", "$device:{}", "x-{}-y", "{U}", "{Q}", "{QQ}", "{}+{}",
                                         "https%3A%2F%2Fa.example%2F%3Fr%3D{Q}", "https://a.example/?next={}"]))
            return form.format(v, v, U=v.upper(), Q=quote(v, safe=""), QQ=quote(quote(v, safe=""), safe=""))
        if kind < 8:
            return draw(st.sampled_from(_VALUES))
        return draw(st.text(alphabet="abcXYZ019-._~%:@/?;,+=$[]", max_size=12))

    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.sampled_from(_ID_NAMES), st.sampled_from(_CLICK_NAMES),
                              st.sampled_from(_CONTACT_NAMES), st.sampled_from(_SECRET_NAMES),
                              st.sampled_from(_OTHER_NAMES)))
        sep = draw(st.sampled_from(["=", "=", "=", "=", ""]))
        parts.append(name + sep + (value() if sep else ""))
        if draw(st.integers(0, 8)) == 0:
            parts.append("")  # `a=1&&b=2`
    return "&".join(parts)


# Collection paths (privproxy.vendors, in spellings the origin reads as them): the proxy logs a beacon's path alone.
_BEACONS = ["/g/collect", "/G/Collect/", "//g//collect", "/g/%63ollect", "/x/../g/collect", "/collect", "/j/collect",
            "/matomo.php", "/stats/piwik.php", "/b/ss/rsid/1/JS-2.0", "/ee/v1/interact", "/i", "/e", "/tr",
            "/batch", "/Batch", "/batch/", "/track", "/track/", "/engage", "/capture", "/api/event", "/v1/t",
            "/com.snowplowanalytics.snowplow/tp2", "/i/v0/e/", "/g/collect;jsessionid=ABC12345", "/g/collectx"]
# Absolute-form request targets (RFC 9112 3.2.2): the proxy reads and logs them in origin-form.
_ORIGINS = ["http://shop.example", "https://Shop.Example:8443", "HTTP://shop.example.", "http://203.0.113.77",
            "http://[2001:db8::1]:8080", "http://u:pw@h.example", "http://h.example:99999", "http://", "ftp://x.example",
            "https://x.example\\y"]


@st.composite
def _targets(draw) -> str:
    path = draw(_paths()) if draw(st.integers(0, 3)) else draw(st.sampled_from(_BEACONS))
    if draw(st.integers(0, 6)) != 0:
        path = f"{path}?{draw(_queries())}"
    return path


@st.composite
def _request_targets(draw) -> str:
    """A target as a client sends it: origin-form mostly, absolute-form, `*`."""
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return "*"
    path = draw(_targets())
    if kind < 4:
        origin = draw(st.sampled_from(_ORIGINS))
        return origin + (path if draw(st.integers(0, 5)) else path.lstrip("/"))
    return path


@st.composite
def _referrers(draw) -> str:
    origin = draw(st.sampled_from(["https://shop.example", "http://www.example.com:8080", "https://u:pw@h.example",
                                   "HTTPS://Shop.Example", "https://203.0.113.77", "", "android-app://com.x",
                                   "https://a.example?"]))
    ref = origin + draw(_targets())
    if draw(st.integers(0, 5)) == 0:
        ref += "#" + draw(st.sampled_from(["top", "access_token=eyJ.abc.def&state=x", "uid=member-12345",
                                           "jane@example.com"]))
    return ref


def _proxy_logs(target: str, referrer: str) -> tuple[str, str]:
    """The path and referrer of the record the proxy's pipeline writes (pipeline.begin, pipeline.log_record) for
    a GET of `target` with this Referer: "-" for a target it refuses, a beacon's collection path alone, an
    absolute-form target in origin-form. The Host names the absolute-form's authority (else the proxy answers
    400 whatever the target), the default site's otherwise; a Combined line names no Host."""
    scheme, sep, rest = target.partition("://")
    authority = rest.partition("/")[0].partition("?")[0] if sep and "/" not in scheme else ""
    host = authority or "shop.example"
    index = {"host": [host], "user-agent": ["curl/8.1.0"]}
    view = pipeline.RequestView(peer="198.51.100.7", tls=True, method="GET", host=host, path=target,
                                get_all=lambda name: index.get(name, []), authority=authority,
                                fields=(("Host", host), ("User-Agent", "curl/8.1.0")))
    state = pipeline.begin(view, SHIPPED)
    record = pipeline.log_record(state, view, 200, 512, Outcome.FORWARDED, state.started, user_agent="curl/8.1.0")
    # The referrer as a request to the site's own Host logs it: the Host filter-log is told about (--site-host).
    # A refused head or another authority names no Host or another one, which a log line does not show.
    ref_view = pipeline.RequestView(peer="198.51.100.7", tls=True, method="GET", host="shop.example", path="/",
                                    get_all=lambda name: {"host": ["shop.example"]}.get(name, []),
                                    fields=(("Host", "shop.example"),))
    ref_state = pipeline.begin(ref_view, SHIPPED)
    return record.path, pipeline.log_record(ref_state, ref_view, 200, 1, Outcome.FORWARDED, ref_state.started,
                                            referrer=referrer).referrer


def _nginx_quoted(v: str) -> str:
    """A field as nginx's default log escaping writes it: `"`, `\\`, controls and bytes above 0x7E as \\xHH."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02X}"
                   for b in v.encode("utf-8", "surrogateescape"))


@settings(max_examples=800, deadline=None)
@given(_request_targets(), _referrers())
def test_filter_log_gives_what_the_proxy_logs_for_the_same_target_and_referrer(target, referrer):
    path, ref = _proxy_logs(target, referrer)
    combined = _FILTERS["combined"].line(
        f'203.0.113.77 - - [01/Dec/2026:12:00:00 +0000] "GET {_nginx_quoted(target)} HTTP/1.1" 200 512 '
        f'"{_nginx_quoted(referrer)}" "curl/8.1.0"\n')
    fields = combined.split('"')
    assert len(fields) == 7, combined
    # the proxy's own Combined writer (access_log.formats) for the same record
    assert fields[1] == formats.quoted(f"GET {path} HTTP/1.1")
    assert fields[3] == formats.quoted(ref)
    doc = json.loads(_FILTERS["json"].line(json.dumps({
        "remote_addr": "203.0.113.77", "request": f"GET {target} HTTP/1.1", "request_uri": target,
        "path": target, "http_referer": referrer, "referrer": referrer})))
    assert doc["request"] == f"GET {path} HTTP/1.1"
    assert doc["request_uri"] == doc["path"] == path
    assert doc["http_referer"] == doc["referrer"] == ref


def test_urls_with_fresh_identifiers_are_not_remembered_whole():
    # A click id makes every URL new: such URLs get no whole-URL cache entry (nor push out the ones that repeat),
    # and come out the same whether remembered or not.
    f = LogFilter(SHIPPED, "combined")
    line = '203.0.113.7 - - [01/Dec/2026:12:00:00 +0000] "GET {} HTTP/1.1" 200 1 "-" "curl/8.1.0"\n'
    first = [f.line(line.format(f"/p?gclid=EAIaIQob{i:09d}&ref=home")) for i in range(3)]
    assert first == [line.format("/p?ref=home").replace("203.0.113.7", "203.0.113.0").replace("curl/8.1.0",
                                                                                                "curl 8 (Other)")] * 3
    assert not [u for u in f._whole_path if "gclid" in u]
    assert f.line(line.format("/p?ref=home")) == first[0] and "/p?ref=home" in f._whole_path


def test_identifier_echoes_and_credentials_as_the_proxy_logs_them():
    # Found by the property test above: filter-log kept copies of identifiers (issue 17 item 7) and the
    # user:password of absolute referrers, which the proxy's log removes.
    f = LogFilter(SHIPPED, "combined")
    s = SHIPPED.scrubber.to("log")
    for target in ("/p?uid=member-12345&e_n=$device:member-12345", "/p?gclid=EAIaIQ1234&ref=EAIaIQ1234",
                   "/p?e_n=MEMBER-12345&userId=member-12345", "/p?next=https%3A%2F%2Fa.example%2F%3Fr%3Dmember-12345"
                   "&user%5Bid%5D=member-12345"):
        out = f._scrub_url(target, "path")
        assert out == s.url(target, "path", []) and "member-12345" not in out and "EAIaIQ1234" not in out
    assert f._scrub_url("https://u:pw@h.example/p?q=1", "referrer") == "https://h.example"  # external: its origin
    own = LogFilter(with_site_hosts(SHIPPED, ["h.example"]), "combined")  # internal: path and query kept, scrubbed
    assert own._scrub_url("https://u:pw@h.example/p?q=1", "referrer") == "https://h.example/p?q=1"
    assert f._scrub_url("https://u:pw@h.example/p?q=1", "path") == "-"  # answered 400: no host is `u:pw@h...`
    # the target as nginx logs a backslash (\x5C): read as the server read it, a sensitive page
    line = '203.0.113.77 - - [01/Dec/2026:12:00:00 +0000] "GET /a\\x5C..\\x5Chealth\\x5Cx HTTP/1.1" 200 1 "-" "-"\n'
    assert '"GET /health/* HTTP/1.1"' in f.line(line)
    # bytes that are not UTF-8 (nginx writes them as \xHH) are what mitmproxy hands the proxy: surrogate escapes,
    # written as %XX, or the whole field "[redacted]" where the proxy's scrubbing fails on them
    for target, ref in (("/p\udcff?q=1", "https://a.example/\udcfe"), ("/p?uid=\udcffabcd&x=1", "-"),
                        ("/p?email=\udcff", "https://a.example/?uid=x\udcff")):
        path, referrer = _proxy_logs(target, referrer=ref if ref != "-" else "")
        out = f.line(f'203.0.113.77 - - [01/Dec/2026:12:00:00 +0000] "GET {_nginx_quoted(target)} HTTP/1.1" 200 1 '
                     f'"{_nginx_quoted(ref)}" "-"\n').split('"')
        assert (out[1], out[3]) == (formats.quoted(f"GET {path} HTTP/1.1"), formats.quoted(referrer)), target


# --- the core's shortcuts filter-log leans on give the answers of what they shortcut -----------------------------
_TEXT = st.text(alphabet=st.sampled_from([*'abeyJ@+.:-() /\\%;#?\t\n0123456789xX\x7f"', "٣", "\u3000", "é", "\x85",
                                          "\u2028", "\ud800"]),
                max_size=40)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_TEXT, _paths(), _queries()))
def test_the_detectors_precheck_answers_as_its_expression(text):
    # could_contain answers ASCII text without _MAYBE when text lacks what every branch needs: never otherwise
    assert detectors.could_contain(text) == (detectors._MAYBE.search(text) is not None), text


@settings(max_examples=600, deadline=None)
@given(st.one_of(_TEXT.map(lambda t: "/" + t), _paths(), _targets()))
def test_a_plain_path_is_its_own_canonical_path(path):
    # Scrubber.path and filter-log skip target.parse for a plain path: it must read as itself
    if targets.plain(path):
        assert targets.parse(path).path == path, path
    # its substring tests for printable ASCII say what its expressions say
    assert targets.plain(path) == (path[:1] == "/" and "?" not in path and targets.BAD_CHAR.search(path) is None
                                   and targets._COMPLEX.search(path) is None), path
    assert targets.plain("/products/watch-42") and not targets.plain("//g/collect") and not targets.plain("/a?b")


@settings(max_examples=600, deadline=None)
@given(st.one_of(_TEXT, _paths(), _targets()))
def test_the_escape_shortcuts_answer_as_the_expressions(text):
    assert log_filter._needs_escape(text) == (log_filter._NEEDS_ESCAPE.search(text) is not None), text
    assert log_filter._refused(text) == (log_filter._REFUSED.search(text) is not None), text


_SIEVED = [LogFilter(rules, "combined") for rules in (SHIPPED, policy.from_text(
    POLICY + "beacons:\n  paths: {'/m/*': ga4, '*/hit.gif': snowplow, '/Exact/': ga4, '*.php': matomo}\n",
    "sieve.yaml", secret=b"s"))]


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_paths(), st.sampled_from(_BEACONS), st.text(alphabet="/abgcolectipmhrsx.*2vTEB", max_size=16),
                 st.tuples(st.sampled_from(_BEACONS), st.sampled_from(["", "/", "x", "/x", "//"])).map("".join)))
def test_the_beacon_sieve_lets_every_beacon_through(path):
    # filter-log asks beacons.Settings.match only about paths the sieve lets through: none of its vendors' paths,
    # nor any configured one, may be missed (then the proxy logs a collection path that filter-log would not)
    try:
        canonical = targets.parse(path).path
    except targets.TargetError:
        return
    for f in _SIEVED:
        try:
            found = f.policy.beacons.match(canonical, f.policy.sites.default.beacon_paths) is not None
        except vendors.AmbiguousPath:
            found = True
        assert f._may_be_beacon(canonical) or not found, canonical
    assert not _SIEVED[0]._may_be_beacon("/products/watch-42")


# --- workers read their own blocks of a file (log_filter.spans) ------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "bb", "\n", "x" * 40, "é", "\r\n"]), max_size=60).map("".join),
       st.integers(1, 64), st.integers(0, 8))
def test_spans_cover_the_file_in_whole_lines(tmp_path_factory, text, size, skip):
    data = text.encode()
    skip = min(skip, len(data))
    path = tmp_path_factory.mktemp("spans") / "access.log"
    path.write_bytes(data)
    with open(path, "rb") as f:
        got = list(log_filter.spans(f.fileno(), skip, size))
    # contiguous from the start offset to the end of the file
    assert b"".join(data[a:b] for a, b in got) == data[skip:]
    assert all(b > a for a, b in got) and all(b == c for (_, b), (c, _) in zip(got, got[1:], strict=False))
    # each block ends at the first newline at or after `size` bytes, the last one perhaps at the end instead
    for a, b in got:
        nl = data.find(b"\n", a + size - 1)
        assert b == (nl + 1 if nl >= 0 else len(data))


def test_spans_cut_a_line_longer_than_max_line(tmp_path, monkeypatch):
    # as blocks() does, so that memory stays bounded: each piece goes to a worker on its own
    monkeypatch.setattr(log_filter, "MAX_LINE", 100)
    path = tmp_path / "access.log"
    data = b"a" * 300_000 + b"\nshort\n"
    path.write_bytes(data)
    with open(path, "rb") as f:
        got = list(log_filter.spans(f.fileno(), 0, 10))
    assert b"".join(data[a:b] for a, b in got) == data
    assert got[0][1] < 300_000 and len(got) > 2  # cut before the line's end, in pieces
    assert all(b - a <= 10 + 100 + (1 << 16) for a, b in got)


def test_spans_wait_for_a_line_a_writer_is_still_appending(tmp_path, monkeypatch):
    # the file grows while the probe looks for the end of a line: the block ends at that line's newline, never
    # where the writer had got to
    path = tmp_path / "access.log"
    path.write_bytes(b"first\nsecond line, half")
    calls = []
    real_fstat = log_filter.os.fstat

    def fstat(fd):
        calls.append(fd)
        if len(calls) == 2:  # the probe reached the end the outer loop saw
            with open(path, "ab") as w:
                w.write(b" written\nthird\n")
        return real_fstat(fd)

    monkeypatch.setattr(log_filter.os, "fstat", fstat)
    with open(path, "rb") as f:
        got = list(log_filter.spans(f.fileno(), 0, 10))
    data = path.read_bytes()
    assert [data[a:b] for a, b in got] == [b"first\nsecond line, half written\n", b"third\n"]
