"""filter-log's other layouts: vhost_combined, Apache and nginx error logs, `--regex` (issue 21 item 5).

Each parser has a generator of lines in the layout its server writes, with addresses and identifiers in spellings
the rules were not written from: none of them may survive, and every well-formed line is written (a filter that
rejected everything would pass the first check alone).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import log_filter, policy
from privproxy.access_log import formats
from privproxy.access_log.record import LogRecord
from privproxy.log_filter import LogFilter
from privproxy.outcome import Outcome
from tests.helpers import REPO

SHIPPED = policy.from_text((REPO / "filters.yaml").read_text(encoding="utf-8"), "filters.yaml",
                           secret=b"filter-log-formats")
REGEX = (r'(?P<vhost>\S+) (?P<client>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d+) '
         r'"(?P<referrer>[^"]*)" "(?P<user_agent>[^"]*)" user=(?P<user>\S+)(?P<rest>.*)')
_FILTERS = {fmt: LogFilter(SHIPPED, fmt, regex=REGEX if fmt == "regex" else None)
            for fmt in ("vhost_combined", "apache-error", "nginx-error", "regex")}

# Addresses in held-out spellings: (as the server writes it, what must not appear afterwards)
_ADDRESSES = [("203.0.113.77", "203.0.113.77"), ("198.51.100.201", "100.201"), ("2001:db8:abcd:12::7", "abcd:12"),
              ("2001:db8:abcd:0012:0000:0000:0000:0007", "0012:"), ("::ffff:203.0.113.77", "113.77"),
              ("2001:DB8:ABCD:12::7", "ABCD:12"), ("192.0.2.199", "2.199")]
# Identifiers: (value in the URL, what must not appear afterwards)
_IDS = [("member-12345", "member-12345"), ("EAIaSecretClick", "EAIaSecretClick"),
        ("jane%40example.com", "jane"), ("jane@example.com", "jane"), ("JANE%2540EXAMPLE.COM", "JANE"),
        ("%2B81%2090%208765%204321", "8765"), ("090-8765-4321", "8765")]
_NAMES = {"member-12345": ["uid", "user_id", "userId", "customer_id", "memberID"],
          "EAIaSecretClick": ["gclid", "fbclid", "msclkid", "GCLID"]}


@st.composite
def _address(draw) -> tuple[str, str]:
    return draw(st.sampled_from(_ADDRESSES))


@st.composite
def _url_with_secret(draw, absolute: bool) -> tuple[str, str]:
    value, secret = draw(st.sampled_from(_IDS))
    name = draw(st.sampled_from(_NAMES.get(value, ["email", "mail", "tel", "phone", "e-mail"])))
    path = draw(st.sampled_from(["/p", "/products/watch-42", "/search", "/", "/ja/news"]))
    query = [f"{name}={value}"]
    if draw(st.booleans()):
        query.insert(draw(st.integers(0, 1)), "q=watch")
    url = f"{path}?{'&'.join(query)}"
    if absolute:
        url = draw(st.sampled_from(["https://shop.example", "http://ref.example:8080"])) + url
    return url, secret


_UA = ["Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "curl/8.1.0", "-"]


def _clean(out: str | None, secrets: list[str]) -> None:
    assert out is not None, "a well-formed line was not written"
    assert out.endswith("\n") and out.count("\n") == 1
    for s in secrets:
        assert s not in out, (s, out)


@settings(max_examples=300, deadline=None)
@given(_address(), _url_with_secret(False), _url_with_secret(True), st.sampled_from(_UA),
       st.sampled_from(["www.example.com", "Shop.Example", "203.0.113.99", "[2001:db8:abcd:12::99]"]),
       st.sampled_from(["443", "80", "8443"]))
def test_vhost_combined_leaves_no_address_or_identifier(address, target, referrer, agent, vhost, port):
    line = (f'{vhost}:{port} {address[0]} - jane [01/Dec/2026:10:00:00 +0000] "GET {target[0]} HTTP/1.1" 200 512 '
            f'"{referrer[0]}" "{agent}"\n')
    out = _FILTERS["vhost_combined"].line(line)
    _clean(out, [address[1], target[1], referrer[1], "jane", "2.0.113.99", "abcd:12::99"])
    assert out.split(" ")[0].endswith(f":{port}")


@settings(max_examples=300, deadline=None)
@given(_address(), st.one_of(st.none(), _address()), _url_with_secret(False), _url_with_secret(True),
       st.sampled_from(["[Tue Dec 01 10:00:00.123456 2026]", "[Tue Dec 01 10:00:00 2026]",
                        "[2026-12-01 10:00:00.123456]"]),
       st.sampled_from(["[core:error] [pid 123:tid 456]", "[error]", "[proxy_fcgi:error] [pid 9]"]),
       st.sampled_from(["{port}", ""]), st.integers(0, 3), st.booleans())
def test_apache_error_leaves_no_address_or_identifier(client, remote, target, referrer, when, tags, port, kind,
                                                      with_referer):
    addr = client[0] + (":53422" if port else "")
    head = f"{when} {tags}" + (f" [remote {remote[0]}:5678]" if remote else "") + f" [client {addr}]"
    path = target[0].partition("?")[0]
    message = [f"AH00126: Invalid URI in request GET {target[0]} HTTP/1.1",
               f"AH00128: File does not exist: /var/www/html{path}/jane.doe@example.com",
               f"AH01071: Got error 'Primary script unknown' for {referrer[0]}",
               f"AH00124: Request exceeded the limit of 10 internal redirects from {client[0]}"][kind]
    line = f"{head} {message}" + (f", referer: {referrer[0]}" if with_referer else "") + "\n"
    secrets = [client[1], target[1], referrer[1], "53422", "jane.doe"] + ([remote[1], "5678"] if remote else [])
    _clean(_FILTERS["apache-error"].line(line), secrets)


@settings(max_examples=300, deadline=None)
@given(_address(), _url_with_secret(False), _url_with_secret(True), _address(), st.integers(0, 2),
       st.booleans(), st.booleans(), st.sampled_from(["example.com", "_", "203.0.113.99"]))
def test_nginx_error_leaves_no_address_or_identifier(client, target, referrer, upstream, kind, with_upstream,
                                                     with_referrer, server):
    path = target[0].partition("?")[0]
    message = [f'open() "/usr/share/nginx/html{path}/jane.doe@example.com" failed (2: No such file or directory)',
               "upstream timed out (110: Connection timed out) while reading response header from upstream",
               f'"/var/www/html{path}/index.html" is not found (2: No such file or directory)'][kind]
    up = upstream[0] if ":" not in upstream[0] else f"[{upstream[0]}]"
    line = (f"2026/12/01 10:00:00 [error] 123#0: *1 {message}, client: {client[0]}, server: {server}, "
            f'request: "GET {target[0]} HTTP/1.1"'
            + (f', upstream: "http://{up}:8080{target[0]}"' if with_upstream else "")
            + ', host: "shop.example"' + (f', referrer: "{referrer[0]}"' if with_referrer else "") + "\n")
    secrets = [client[1], target[1], referrer[1], "2.0.113.99", "jane.doe"] + ([upstream[1]] if with_upstream else [])
    out = _FILTERS["nginx-error"].line(line)
    _clean(out, secrets)
    assert ', request: "GET ' in out and ', host: "shop.example"' in out


@settings(max_examples=300, deadline=None)
@given(_address(), _url_with_secret(False), _url_with_secret(True), st.sampled_from(_UA),
       st.sampled_from(["", " note=jane@example.com", " from 198.51.100.201", " tel 090-8765-4321"]))
def test_regex_layout_leaves_no_address_or_identifier(client, target, referrer, agent, rest):
    line = (f'www.example.com {client[0]} [01/Dec/2026:10:00:00 +0000] "GET {target[0]} HTTP/1.1" 200 '
            f'"{referrer[0]}" "{agent}" user=jane{rest}\n')
    _clean(_FILTERS["regex"].line(line), [client[1], target[1], referrer[1], "jane", "100.201", "8765"])


def test_each_layout_field_by_field(policy_from_yaml):
    p = policy_from_yaml("""
version: 1
rules:
  - {id: click, action: drop, scopes: [query], names: [gclid]}
  - {id: mail, action: redact, scopes: [query], names: [email]}
sensitive_paths:
  - {id: health, pattern: /health/**}
""")
    # a referrer comes out as the Combined path writes it (the referrer rules are the proxy's)
    ref1, ref2 = _combined_referrer(p, "https://r.example/?email=a@b.example"), _combined_referrer(
        p, "https://r.example/?gclid=z&q=3")
    assert "a@b.example" not in ref1 and "gclid" not in ref2
    f = LogFilter(p, "apache-error")
    assert f.line("[Tue Dec 01 10:00:00.123456 2026] [core:error] [pid 123:tid 456] [client 203.0.113.7:5678] "
                  "AH00126: Invalid URI in request GET /x?gclid=1&q=2 HTTP/1.1, referer: https://r.example/?email=a"
                  "@b.example\n") == (
        "[Tue Dec 01 10:00:00.123456 2026] [core:error] [pid 123:tid 456] [client 203.0.113.0] AH00126: Invalid "
        f"URI in request GET /x?q=2 HTTP/1.1, referer: {ref1}\n")
    f = LogFilter(p, "nginx-error")
    assert f.line('2026/12/01 10:00:00 [error] 123#0: *1 open() "/usr/share/nginx/html/health/x" failed (2: No such '
                  'file or directory), client: 203.0.113.7, server: example.com, request: "GET /health/x?q=1 '
                  'HTTP/1.1", host: "example.com", referrer: "https://r.example/?gclid=z&q=3"\n') == (
        '2026/12/01 10:00:00 [error] 123#0: *1 open() "/usr/share/nginx/html/health/*" failed (2: No such '
        'file or directory), client: 203.0.113.0, server: example.com, request: "GET /health/* HTTP/1.1", '
        f'host: "example.com", referrer: "{ref2}"\n')
    f = LogFilter(p, "vhost_combined")
    assert f.line('www.example.com:443 203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET /p?gclid=1 HTTP/1.1" 200 '
                  '5 "-" "curl/8.1.0"\n') == (
        'www.example.com:443 203.0.113.0 - - [01/Dec/2026:10:00:00 +0000] "GET /p HTTP/1.1" 200 5 "-" '
        '"curl 8 (Other)"\n')
    f = LogFilter(p, "regex", regex=r"(?P<client>\S+) (?P<path>\S+) (?P<port>\d+)")
    assert f.line("203.0.113.7 /p?gclid=1&q=2 5678 jane@example.com\n") == "203.0.113.0 /p?q=2 - [email]\n"


def _combined_referrer(p: policy.Policy, ref: str) -> str:
    out = LogFilter(p, "combined").line(f'203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "{ref}" '
                                        '"-"\n')
    return out.split('"')[3]


def test_lines_of_another_layout_are_not_written(policy_from_yaml):
    p = policy_from_yaml("version: 1\n")
    cases = {"vhost_combined": "203.0.113.7 - - [x] garbage jane@example.com",
             "apache-error": '203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET /?email=jane@example.com HTTP/1.1"',
             "nginx-error": "[Tue Dec 01 10:00:00 2026] [error] [client 203.0.113.7] jane@example.com",
             "regex": "no match here 203.0.113.7"}
    for fmt, line in cases.items():
        f = LogFilter(p, fmt, regex=r"^(?P<client>\d+\.\d+\.\d+\.\d+) GET" if fmt == "regex" else None)
        assert f.line(line + "\n") is None, fmt
        assert f.stats.unparsed == 1 and sum(f.stats.reasons.values()) == 1, fmt
    assert LogFilter(p, "vhost_combined").line("\n") is None


def test_a_regex_must_name_groups_and_compile():
    with pytest.raises(ValueError, match="names no group"):
        log_filter.compile_regex(r"(\S+) (\S+)")
    with pytest.raises(ValueError, match="not a regular expression"):
        log_filter.compile_regex(r"(?P<client>")
    with pytest.raises(ValueError):
        LogFilter(SHIPPED, "regex")
    layout = log_filter.compile_regex(r"(?P<Client>\S+) (?P<note>.*)")
    assert layout.roles == {"Client": "address", "note": "text"}


def _record(host: str, scheme: str = "https") -> LogRecord:
    return LogRecord(ts=1764583200.0, request_id="r", site="default", client="203.0.113.0", method="GET",
                     scheme=scheme, host=host, path="/p?q=1", proto="HTTP/1.1", status=200, bytes=5,
                     duration_ms=1.0, outcome=Outcome.FORWARDED, user_agent="",
                     referrer="")


def test_the_proxys_vhost_combined_writer_is_what_filter_log_reads():
    assert formats.vhost(_record("shop.example")) == "shop.example:443"
    assert formats.vhost(_record("shop.example", "http")) == "shop.example:80"
    assert formats.vhost(_record("shop.example:8443")) == "shop.example:8443"
    assert formats.vhost(_record("[2001:db8::]:8443")) == "[2001:db8::]:8443"
    assert formats.vhost(_record("-")) == "-"
    line = formats.vhost_combined_line(_record("shop.example")).decode()
    assert line == formats.FORMATS["vhost_combined"][1](_record("shop.example")).decode()
    assert line.startswith('shop.example:443 203.0.113.0 - - [01/Dec/2025:10:00:00 +0000] "GET /p?q=1 HTTP/1.1" 200 5 ')
    # written by the proxy, read back by filter-log unchanged: the rules already applied
    assert _FILTERS["vhost_combined"].line(line) == line
    assert "vhost_combined" in formats.FORMAT_CHOICES and formats.selected("vhost_combined") == ("vhost_combined",)


def test_quote_helper_is_the_one_the_generators_use():
    assert quote("jane@example.com", safe="") == "jane%40example.com"


_SOUP = ["[", "]", " ", '"', ",", ", client: ", ", referer: ", ", referrer: ", ", host: ", ", request: ",
         "[client ", "[remote ", "GET ", " HTTP/1.1", "/var/www/html", "/p?uid=", "https://r.example/?email=", ":",
         "2026/12/01 10:00:00 [error] 1#0: *1 ", "[Tue Dec 01 10:00:00 2026] ", "shop.example:443 ", "\\x22", "\\"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["vhost_combined", "apache-error", "nginx-error", "regex"]),
       st.lists(st.one_of(st.sampled_from(_SOUP), _address().map(lambda a: f" {a[0]} ")), max_size=14))
def test_whatever_a_line_holds_no_full_address_survives(fmt, parts):
    # addresses as words (an address glued to other text is no address to anyone reading the log either)
    line = "".join(parts) + "\n"
    out = _FILTERS[fmt].line(line)
    if out is None:
        return
    assert out.endswith("\n") and out.count("\n") == 1
    for address, _ in _ADDRESSES:
        if address in line:
            assert address not in out, (address, line, out)


@pytest.mark.parametrize(("fmt", "line", "secrets"), [
    ("apache-error", "[Tue Dec 01 10:00:00.123456 2026] [auth_basic:error] [pid 1:tid 2] [client 203.0.113.7:5678] "
                     "AH01618: user jane.doe not found: /private", ["jane.doe"]),
    ("apache-error", "[Tue Dec 01 10:00:00 2026] [auth_basic:error] [pid 1] [client 203.0.113.7:5678] AH01617: user "
                     "kenji_tanaka: authentication failure for \"/private\": Password Mismatch", ["kenji_tanaka"]),
    ("apache-error", "[Tue Dec 01 10:00:00 2026] [security2:error] [pid 1] [client 203.0.113.7:5678] ModSecurity: "
                     "Warning. Matched \"Cookie: sessionid=SECRETSESSION; a=b\" [id \"1\"]", ["SECRETSESSION"]),
    ("nginx-error", "2026/12/01 10:00:00 [error] 123#0: *1 user \"kenji_tanaka\" was not found in \"/etc/nginx/"
                    ".htpasswd\", client: 203.0.113.7, server: example.com, request: \"GET /p HTTP/1.1\", host: "
                    "\"example.com\"", ["kenji_tanaka"]),
    ("nginx-error", "2026/12/01 10:00:00 [error] 123#0: *1 user \"kenji_tanaka\": password mismatch, client: "
                    "203.0.113.7, server: example.com, request: \"GET /p HTTP/1.1\", host: \"example.com\"",
     ["kenji_tanaka"]),
])
def test_login_names_and_credentials_in_error_messages_are_removed(fmt, line, secrets):
    out = _FILTERS[fmt].line(line)
    assert out is not None and "203.0.113.7" not in out
    for secret in secrets:
        assert secret not in out
