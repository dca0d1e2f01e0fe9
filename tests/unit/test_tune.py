"""`privproxy tune`: what real traffic carries that no rule classifies, and the rule each would get (issue 21
item 6; C2, C8: 004 definition of personal information)."""

from __future__ import annotations

import json
import random
import string

import yaml

from privproxy import explain, policy, tune
from tests.helpers import REPO

SHIPPED_TEXT = (REPO / "filters.yaml").read_text(encoding="utf-8")
SHIPPED = policy.from_text(SHIPPED_TEXT, "filters.yaml", secret=b"tune")
RNG = random.Random(7)


def _id() -> str:
    return "".join(RNG.choices(string.ascii_letters + string.digits, k=16)) + "9"


def _traffic() -> tuple[list[explain.Sample], list[str]]:
    """Requests with unknown fields of each kind; the values that must never be printed."""
    secrets, out = [], []
    for i in range(40):
        ref, sess = _id(), _id()
        secrets += [ref, sess]
        url = (f"https://shop.example/p?q=watch&color={['crimson', 'teal'][i % 2]}&ref_code={ref}&my_clid=C{i}x"
               f"&uid=member-{i}&note=hello+world+{i}+{ref[:4]}")
        out.append(explain.Sample("GET", url, (("Cookie", f"shop_sess_token={sess}; theme=dark"),)))
    out.append(explain.Sample("GET", "https://shop.example/g/collect?v=2&tid=G-ABC123&cid=1.2&en=page_view"
                                     "&ep.loyalty_rank=gold"))
    return out, secrets


def _tuned(samples) -> tune.Tuner:
    t = tune.Tuner(SHIPPED)
    for s in samples:
        t.add(s)
    return t


def test_unknown_fields_by_frequency_with_the_rule_each_would_get():
    samples, _ = _traffic()
    t = _tuned(samples)
    got = {(s.scope, s.name): s for s in t.suggestions()}
    assert ("query", "uid") not in got  # a shipped rule names it: the pipeline classifies it
    assert got[("query", "ref_code")].action == "hash" and got[("query", "ref_code")].confident
    assert got[("query", "ref_code")].distinct == 40 and got[("query", "ref_code")].id_like_share == 1.0
    assert got[("query", "my_clid")].action == "drop"
    assert got[("query", "color")].action == "keep" and got[("query", "color")].distinct == 2
    assert got[("query", "note")].action == "redact" and not got[("query", "note")].confident
    assert got[("cookie", "shop_sess_token")].action == "drop"
    assert got[("cookie", "theme")].action == "keep"
    beacon = got[("body", "ep.loyalty_rank")]
    assert beacon.seen == 1 and beacon.vendors == ("ga4",) and beacon.distinct is None and not beacon.confident
    assert ("query", "tid") not in got  # a beacon's own parameters are its codec's to classify
    assert t.suggestions()[0].seen == 40 and t.requests == 41


def test_names_only_never_values():
    samples, secrets = _traffic()
    t = _tuned(samples)
    printed = tune.text(t) + json.dumps(tune.as_json(t))
    for v in secrets + ["hello", "member-1", "dark", "crimson", "teal", "gold", "C1x"]:
        assert v not in printed, v


def test_the_snippet_is_a_rules_section_the_policy_accepts():
    samples, _ = _traffic()
    t = _tuned(samples)
    snippet = tune.snippet(t.suggestions())
    rules = yaml.safe_load(snippet)["rules"]
    assert {(r["id"], r["action"]) for r in rules} >= {("tuned-query-hash", "hash"), ("tuned-query-drop", "drop"),
                                                       ("tuned-cookie-drop", "drop")}
    assert all(r["report_only"] is True for r in rules)
    merged = SHIPPED_TEXT.replace("\nrules:\n", "\n" + snippet.replace("rules:\n", "rules:\n", 1)
                                  .split("\n# kept")[0] + "\n", 1)
    p = policy.from_text(merged, "filters.yaml", secret=b"tune")
    assert p.rules.find("query", "ref_code").id == "tuned-query-hash"
    again = tune.Tuner(p)
    for s in samples:
        again.add(s)
    assert ("query", "ref_code") not in {(s.scope, s.name) for s in again.suggestions()}


def test_names_decide_before_values():
    for name, action in [("userId", "hash"), ("User-ID", "hash"), ("deviceGuid", "hash"), ("gclid", "drop"),
                         ("oauth_token", "drop"), ("code", "drop"), ("promo_code", None), ("first_name", "redact"),
                         ("email_sha256", "redact"), ("product_name", None), ("paid", None), ("android", None)]:
        got = tune._by_name(name)
        assert (got[0] if got else None) == action, name
    rare = tune.suggest(tune.Field("query", "x", seen=2, values=2, id_like=2))
    assert rare.action == "keep" and not rare.confident


def test_access_logs_are_read_as_requests():
    combined = ['203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET /p?aff=A1&sku=9 HTTP/1.1" 200 5 '
                '"https://r.example/?x=1" "curl/8"\n', "garbage\n",
                '203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "\\x16\\x03" 400 5 "-" "-"\n']
    got = list(tune.log_samples(combined, "combined"))
    assert [(s.method, s.url) for s in got] == [("GET", "/p?aff=A1&sku=9")]
    assert got[0].header("referer") == ["https://r.example/?x=1"]
    lines = ['{"request": "POST /api?aff=1 HTTP/1.1", "http_referer": "-"}\n', '{"request": {"uri": "/c?z=1"}}\n',
             "[1]\n", "{bad\n", '{"status": 200}\n']
    assert [(s.method, s.url) for s in tune.log_samples(lines, "json")] == [("POST", "/api?aff=1"), ("GET", "/c?z=1")]


def test_har_entries_become_samples_with_cookies():
    har = {"log": {"entries": [{"request": {"method": "GET", "url": "https://shop.example/p?x=1", "headers": [],
                                            "cookies": [{"name": "theme", "value": "dark"}]},
                                "response": {"headers": [{"name": "Set-Cookie", "value": "a=b"}]}}]}}
    (s,) = explain.har_samples(har)
    assert s.header("cookie") == ["theme=dark"] and s.set_cookies == ("a=b",)



def test_a_name_that_is_personal_data_is_never_printed_as_sent():
    from privproxy import explain, policy, tune

    t = tune.Tuner(policy.default())
    for target in ("/a?jane.doe@example.com=1", "/a?4111111111111111=x", "/a?uid_8f3a9c2e71ab=1", "/a?colour=red"):
        t.add(explain.Sample("GET", "https://shop.example" + target))
    t.add(explain.Sample("GET", "https://shop.example/", (("Cookie", "jane.doe@example.com=1"),)))
    names = {(s.scope, s.name) for s in t.suggestions()}
    assert names == {("query", "[email]"), ("query", "[card]"), ("query", "[id]"), ("query", "colour"),
                     ("cookie", "[email]")}
    text = tune.snippet(t.suggestions())
    assert "jane" not in text and "4111" not in text and "8f3a9c2e71ab" not in text
