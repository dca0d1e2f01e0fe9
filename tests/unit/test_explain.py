"""`explain` shows each field before and after, and the rule that acted (issue 3, item 6)."""

from __future__ import annotations

from privproxy.explain import Sample, explain, rule_source

RULES = """
version: 1
rules:
  - {id: click, action: drop, scopes: [query, cookie], names: [gclid, _gcl_aw], why: "no click ids"}
  - {id: trial, action: redact, scopes: [query], names: [ref], report_only: true}
  - {id: ga, action: hash, scopes: [cookie, set_cookie], names: [_ga]}
sensitive_paths:
  - {id: health, pattern: /health/**}
"""


def test_url_fields_rules_and_log_outcome(policy_from_yaml):
    p = policy_from_yaml(RULES)
    ex = explain(p, Sample("GET", "https://shop.example/p?q=watch&gclid=abc&ref=x&to=jane%40example.com"))
    by_field = {c.field: c for c in ex.changes}
    assert by_field["gclid"].rule == "click" and by_field["gclid"].after is None
    assert by_field["ref"].report_only and by_field["ref"].after == "[redacted]"
    assert by_field["to"].rule == "detector:email"
    assert ex.kept == [("query", "q")]
    assert ex.logged_path == "/p?q=watch&ref=x&to=[email]"
    assert rule_source(p, "click").startswith("test.yaml:4") and "no click ids" in rule_source(p, "click")


def test_nested_url_parameter_is_not_reported_unchanged(policy_from_yaml):
    p = policy_from_yaml(RULES)
    ex = explain(p, Sample("GET", "/go?dl=https%3A%2F%2Fx.example%2F%3Fgclid%3D1%26a%3D2&page=3"))
    assert ("query", "dl") not in ex.kept and ("query", "page") in ex.kept
    assert "gclid" not in ex.logged_path


def test_headers_cookies_and_set_cookies(policy_from_yaml):
    p = policy_from_yaml(RULES)
    ex = explain(p, Sample("GET", "https://shop.example/health/clinic?x=1", headers=(
        ("Cookie", "_ga=GA1.1.5.6; _gcl_aw=GCL.1.c; sid=9"), ("Referer", "https://shop.example/health/b"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")),
        set_cookies=("_ga=GA1.1.7.8; Path=/", "sid=1")))
    # the site's own page (its Host): through the URL rules; another site's is cut to its origin (referrer:)
    assert ex.logged_path == "/health/*" and ex.logged_referrer == "https://shop.example/health/*"
    assert ex.logged_user_agent == "Firefox 121 (Linux)"
    assert ex.origin_cookie.startswith("_ga=pp_") and "_gcl_aw" not in ex.origin_cookie
    assert ex.origin_cookie.endswith("sid=9") and ("cookie", "sid") in ex.kept
    assert ex.set_cookies_kept == ("sid=1",)


def test_country_selects_region_rules(policy_from_yaml):
    p = policy_from_yaml("version: 1\nrules:\n  - {id: eu, action: drop, scopes: [query], names: [c], regions: [EU]}\n")
    assert explain(p, Sample("GET", "/p?c=1"), "US").logged_path == "/p?c=1"
    assert explain(p, Sample("GET", "/p?c=1"), "FR").logged_path == "/p"
    assert explain(p, Sample("GET", "/p?c=1")).logged_path == "/p"


def test_explain_a_beacon_shows_each_field_and_the_role_that_changed_it(policy_from_yaml):
    from privproxy import explain

    p = policy_from_yaml("version: 1\n")
    body = b'{"client_id": "123.456", "events": [{"name": "buy", "params": {"email": "a@b.example", "x": 1}}]}'
    ex = explain.explain(p, explain.Sample("POST", "https://shop.example/mp/collect?measurement_id=G-1",
                                           (("Content-Type", "application/json"),), body=body))
    assert ex.vendor == "ga4" and ex.beacon == "scrubbed"
    got = {c.field: (c.rule, c.after) for c in ex.changes}
    assert got["email"] == ("role:contact", None) and got["client_id"][0] == "role:client_id"
    assert explain.rule_source(p, "role:contact") == "beacons.roles.contact"
    bad = explain.explain(p, explain.Sample("POST", "https://shop.example/mp/collect", body=b"{broken"))
    assert bad.beacon == "not forwarded: answered 204 (bad_json)"


def test_consent_decision_is_shown_and_changes_what_the_vendor_gets(policy_from_yaml, monkeypatch):
    import time

    from privproxy.consent import token

    key = "explain-consent-key-0123456789abcdef"
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", key)
    p = policy_from_yaml(RULES)
    cookie = "_ga=GA1.1.5.6; privproxy_consent=" + token.mint("m-42", ("analytics",), int(time.time()), 60, "k1",
                                                              key.encode())
    url = "https://shop.example/g/collect?v=2&cid=123.456&uid=m-42&en=x"
    given = explain(p, Sample("GET", url, (("cookie", cookie),), ("_ga=GA1.1.7.8; Path=/",)))
    assert given.consent.state == "valid" and given.consent.member == "m-42" and not given.consent.linked
    # the vendor's collector gets its own cookies only, as the proxy forwards them (not the consent token)
    assert given.beacon == "as sent (member consent)" and given.origin_cookie == "_ga=GA1.1.5.6"
    assert given.set_cookies_kept == ("_ga=GA1.1.7.8; Path=/",)
    gpc = explain(p, Sample("GET", url, (("cookie", cookie), ("sec-gpc", "1"))))
    assert gpc.consent.state == "gpc" and gpc.beacon == "scrubbed" and "GA1.1.5.6" not in gpc.origin_cookie
    denied = explain(p, Sample("GET", url + "&gcs=G100", (("cookie", cookie),)))
    assert denied.consent.state == "beacon_opt_out" and denied.beacon == "scrubbed"


# --- beacons.forward and beacons.scripts: explain says where the gateway sends them (mitm.gateway) ------------------
def gateway_policy():
    from pathlib import Path

    from privproxy import policy

    text = (Path(__file__).resolve().parents[2] / "filters.yaml").read_text(encoding="utf-8")
    extra = ("  forward:\n    ga4: https://region1.google-analytics.com\n    meta_pixel: https://www.facebook.com\n"
             "  scripts:\n    /js/script.js: https://plausible.io/js/script.js\n")
    anchor = "  max_body_kb: 512"
    assert anchor in text
    return policy.from_text(text.replace(anchor, extra + anchor, 1), "filters.yaml", secret=b"explain-gateway")


def test_a_forwarded_beacon_is_explained_as_the_request_the_vendor_gets():
    p = gateway_policy()
    ga = Sample("GET", "https://shop.example/g/collect?v=2&tid=G-1&en=page_view&cid=123.456&uid=member-7",
                headers=(("Cookie", "_ga=GA1.1.123.456; session=abc"),))
    ex = explain(p, ga, client="203.0.113.77")
    assert ex.answered is None and ex.forwarded is not None
    assert ex.forwarded.target.startswith("https://region1.google-analytics.com/g/collect?")
    assert "_uip=203.0.113.0" in ex.forwarded.target and "member-7" not in ex.forwarded.target
    headers = dict(ex.forwarded.headers)
    assert headers["Host"] == "region1.google-analytics.com" and headers["X-Forwarded-For"] == "203.0.113.0"
    assert "session=abc" not in (headers.get("Cookie") or "")
    # the visitor's own signal refuses an advertising vendor: answered 204, nothing sent
    pixel = Sample("GET", "https://shop.example/tr?id=1&ev=PageView", headers=(("Sec-GPC", "1"),))
    refused = explain(p, pixel, client="203.0.113.77")
    assert refused.forwarded is None and refused.answered is not None and refused.answered.status == 204


def test_a_tracker_script_is_explained_as_fetched_without_the_visitor():
    ex = explain(gateway_policy(), Sample("GET", "https://shop.example/js/script.js", headers=(
        ("Cookie", "session=abc"), ("Referer", "https://shop.example/cart"))), client="203.0.113.77")
    assert ex.forwarded is not None and ex.forwarded.target == "https://plausible.io/js/script.js"
    assert all(k.lower() not in ("cookie", "referer", "x-forwarded-for") for k, _ in ex.forwarded.headers)
