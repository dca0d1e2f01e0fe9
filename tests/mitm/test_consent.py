"""Member-linkage consent through privproxy's addon chain (taddons): one decision per request drives the
beacon, the cookies both ways, the linked log and the consent metric (C5, C12, C13)."""

from __future__ import annotations

import time

import orjson
import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tutils

import privproxy.mitm
from privproxy.consent import token
from privproxy.metrics import Metrics
from privproxy.mitm.shared import SharedState
from tests.helpers import REPO
from tests.mitm.conftest import make_flow
from tests.mitm.test_filter import run_request, run_requestheaders

KEY = "consent-key-for-the-mitm-tests-0123456789"
GA4 = "/g/collect?v=2&tid=G-ABC123&cid=1234567890.1700000000&uid=member-4711&sid=1700000001&en=page_view" \
      "&dl=https%3A%2F%2Fshop.example%2Fitem%3Femail%3Dvisitor%2540example.com"


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", KEY)
    cfg = tmp_path / "filters.yaml"
    cfg.write_text((REPO / "filters.yaml").read_text().replace(
        "  # header: X-Privproxy-Consent", "  header: X-Privproxy-Consent").replace(
        "  trusted_proxies: []", "  trusted_proxies: [127.0.0.2]", 1))
    shared = SharedState(Metrics())
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(cfg), privproxy_log_dir=str(tmp_path / "logs"))
        yield tctx, addons, shared, tmp_path / "logs"


def consent_cookie(member="member-4711", scopes=("analytics", "logs"), iat=None, ttl=3600, key=KEY):
    iat = int(time.time()) - 5 if iat is None else iat
    return "privproxy_consent=" + token.mint(member, scopes, iat, ttl, "k1", key.encode())


def finish(addons, flow, set_cookies=()):
    flow.response = tutils.tresp(headers=http.Headers([(b"set-cookie", c.encode()) for c in set_cookies]))
    for hook in ("responseheaders", "response"):
        for a in addons:
            if hasattr(a, hook):
                getattr(a, hook)(flow)


def logged(shared, log_dir):
    for sink in shared.all_sinks():
        sink.flush()
    def read(name: str) -> list:
        path = log_dir / name
        return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []

    return read("access.jsonl"), read("linked.jsonl")


def consent_count(shared, state):
    return shared.metrics.registry.get_sample_value("privproxy_consent_decisions_total", {"state": state})


def test_with_consent_the_beacon_passes_byte_for_byte_and_the_member_is_linked(chain):
    tctx, addons, shared, log_dir = chain
    cookies = f"_ga=GA1.1.1234567890.1700000000; {consent_cookie()}; session=s"
    f = make_flow(GA4, headers=[("cookie", cookies)])
    run_request(addons, f)
    assert f.response is None and f.request.path == GA4
    assert f.request.headers["cookie"] == "_ga=GA1.1.1234567890.1700000000"  # only the vendor's, as sent
    finish(addons, f, ["_ga=GA1.1.5.6; Path=/", "session=abc; HttpOnly"])
    assert [c.split("=")[0] for c in f.response.headers.get_all("set-cookie")] == ["_ga", "session"]
    access, linked = logged(shared, log_dir)
    assert len(access) == 1 and "member" not in access[0] and "member-4711" not in orjson.dumps(access).decode()
    assert "1234567890" not in access[0]["path"] and "visitor" not in access[0]["path"]
    assert len(linked) == 1 and linked[0]["member"] == "member-4711" and linked[0]["consent_key"] == "k1"
    assert linked[0]["request_id"] == access[0]["request_id"] and linked[0]["client"] == access[0]["client"]
    assert consent_count(shared, "valid") == 1
    assert shared.metrics.registry.get_sample_value("privproxy_beacons_total",
                                                {"vendor": "ga4", "consent": "given"}) == 1


def test_without_consent_the_same_beacon_is_scrubbed_and_nothing_is_linked(chain):
    tctx, addons, shared, log_dir = chain
    f = make_flow(GA4, headers=[("cookie", "_ga=GA1.1.1234567890.1700000000")])
    run_request(addons, f)
    assert "1234567890" not in f.request.path and "member-4711" not in f.request.path
    assert "1234567890" not in f.request.headers["cookie"]
    finish(addons, f, ["_ga=GA1.1.5.6; Path=/"])
    assert f.response.headers.get_all("set-cookie") == []
    access, linked = logged(shared, log_dir)
    assert len(access) == 1 and linked == []
    assert consent_count(shared, "none") == 1


@pytest.mark.parametrize("extra_headers, cookie_suffix, state", [
    ([("sec-gpc", "1")], "", "gpc"),
    ([("dnt", "1")], "", "dnt"),
    ([], "; privproxy_consent_withdrawn=1", "withdrawn"),
    ([], "; euconsent-v2=CPxxxx", "tcf"),
])
def test_overrides_win_over_a_valid_token(chain, extra_headers, cookie_suffix, state):
    tctx, addons, shared, log_dir = chain
    f = make_flow(GA4, headers=[("cookie", consent_cookie() + cookie_suffix), *extra_headers])
    run_request(addons, f)
    assert "member-4711" not in f.request.path and "1234567890" not in f.request.path
    finish(addons, f)
    assert logged(shared, log_dir)[1] == []
    assert consent_count(shared, state) == 1


@pytest.mark.parametrize("make, state", [
    (lambda: consent_cookie()[:-3] + "abc", "forged"),
    (lambda: consent_cookie(key="another-key-of-the-same-length-0123456789"), "forged"),
    (lambda: consent_cookie(iat=int(time.time()) - 7200, ttl=3600), "expired"),
    (lambda: "privproxy_consent=v1.k1.%%%.x", "malformed"),
])
def test_bad_tokens_count_as_no_consent(chain, make, state):
    tctx, addons, shared, log_dir = chain
    f = make_flow(GA4, headers=[("cookie", make())])
    run_request(addons, f)
    assert "member-4711" not in f.request.path
    finish(addons, f)
    assert logged(shared, log_dir)[1] == [] and consent_count(shared, state) == 1


def test_the_beacons_own_denial_makes_the_decision_stricter(chain):
    tctx, addons, shared, log_dir = chain
    path = GA4 + "&gcs=G100"
    f = make_flow(path, headers=[("cookie", "_ga=GA1.1.1234567890.1700000000; " + consent_cookie())])
    run_request(addons, f)
    assert "member-4711" not in f.request.path and "gcs=G100" in f.request.path
    assert "1234567890" not in f.request.headers["cookie"]  # the cookie decision followed
    finish(addons, f, ["_ga=GA1.1.5.6; Path=/"])
    assert f.response.headers.get_all("set-cookie") == []
    assert logged(shared, log_dir)[1] == [] and consent_count(shared, "beacon_opt_out") == 1


def test_analytics_scope_alone_links_nothing_logs_scope_alone_scrubs_beacons(chain):
    tctx, addons, shared, log_dir = chain
    a = make_flow(GA4, headers=[("cookie", consent_cookie(scopes=("analytics",)))])
    run_request(addons, a)
    assert a.request.path == GA4
    finish(addons, a)
    b = make_flow(GA4, headers=[("cookie", consent_cookie(scopes=("logs",)))])
    run_request(addons, b)
    assert "member-4711" not in b.request.path
    finish(addons, b)
    access, linked = logged(shared, log_dir)
    assert len(access) == 2 and len(linked) == 1


def test_consent_header_believed_only_from_a_trusted_proxy_and_never_forwarded(chain):
    tctx, addons, shared, log_dir = chain
    value = consent_cookie().split("=", 1)[1]
    spoofed = make_flow(GA4, peer="127.9.9.9", headers=[("x-privproxy-consent", value)])
    run_request(addons, spoofed)
    assert "member-4711" not in spoofed.request.path and "x-privproxy-consent" not in spoofed.request.headers
    trusted = make_flow(GA4, peer="127.0.0.2", headers=[("x-privproxy-consent", value),
                                                         ("x-forwarded-for", "203.0.113.9")])
    run_request(addons, trusted)
    assert trusted.request.path == GA4 and "x-privproxy-consent" not in trusted.request.headers


def test_pages_with_consent_keep_tracking_cookies_and_are_linked(chain):
    tctx, addons, shared, log_dir = chain
    f = make_flow("/account?email=visitor%40example.com",
                  headers=[("cookie", "_ga=GA1.1.1234567890.1700000000; " + consent_cookie())])
    run_requestheaders(addons, f)
    assert "_ga=GA1.1.1234567890.1700000000" in f.request.headers["cookie"]
    finish(addons, f)
    access, linked = logged(shared, log_dir)
    assert "visitor" not in access[0]["path"] and "visitor" not in linked[0]["path"]
    assert linked[0]["member"] == "member-4711"


def test_linked_log_has_its_own_retention(tmp_path, monkeypatch):
    import datetime
    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    logs = tmp_path / "logs"
    logs.mkdir()
    day = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=100)).strftime("%Y-%m-%d")
    for name in (f"access-{day}.jsonl", f"linked-{day}.jsonl"):
        (logs / name).write_text("{}\n")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text((REPO / "filters.yaml").read_text().replace("retention_days: 90 ", "retention_days: 400 "))
    assert "retention_days: 400" in cfg.read_text()
    shared = SharedState(Metrics())
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(cfg), privproxy_log_dir=str(logs))
        p = shared.policy
        assert p.consent.linked_retention_days == 400 and p.logging.rotation.retention_days == 30
        assert not (logs / f"access-{day}.jsonl").exists()  # the anonymous log's 30 days
        assert (logs / f"linked-{day}.jsonl").exists()  # the linked log's 400 days
        cfg.write_text(cfg.read_text().replace("retention_days: 400 ", "retention_days: 60 "))
        tctx.configure(addons[0], privproxy_config=str(cfg))
        assert shared.policy.consent.linked_retention_days == 60
        assert not (logs / f"linked-{day}.jsonl").exists()
