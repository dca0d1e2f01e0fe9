"""The first-party analytics gateway through the real `privproxy run`: beacons of every vendor go straight to a local
HTTPS "vendor" under its own CA (`beacons.forward_ca`), scrubbed, with the truncated address where the vendor reads
it; the vendor's answer comes back with HSTS and the Set-Cookie rules; the origin never sees any of it; a vendor
that is down, slow or not trusted gets the visitor a clean 502/504; tracker scripts are fetched without the
visitor's identity, cached and served stale when the vendor fails (C4, C5, C6, C8)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.certs import Authority
from tests.e2e.test_beacons import ALL_COOKIES
from tests.helpers import CLIENT_IP, REPO, Recorded, closed_port, metric, request, start_proxy, tls_context
from tests.vendor_server import Silent, Vendor
from tests.unit.vendors.beacons import CANARIES, CASES
from tests.unit.vendors.test_codecs import all_text

UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 "
      "Safari/537.36")
TRUNCATED = CLIENT_IP.rsplit(".", 1)[0] + ".0"


@pytest.fixture
def authority(tmp_path):
    a = Authority("vendor test")
    a.root_pem(tmp_path / "vendor-ca.pem")
    return a


@pytest.fixture
def vendor(tmp_path, authority):
    v = Vendor(authority, tmp_path)
    yield v
    v.close()


def config(tmp_path: Path, forward: dict[str, str], scripts: dict[str, str] | None = None,
           ca: str = "vendor-ca.pem") -> Path:
    """The shipped filters.yaml with a `beacons.forward` (and `scripts`) toward the test's servers."""
    text = (REPO / "filters.yaml").read_text()
    extra = "  forward:\n" + "".join(f"    {v}: {u}\n" for v, u in forward.items())
    extra += f"  forward_ca: {ca}\n"
    if scripts:
        extra += "  scripts:\n" + "".join(f"    {p}: {u}\n" for p, u in scripts.items())
    anchor = "  max_body_kb: 512"
    assert anchor in text
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(text.replace(anchor, extra + anchor, 1))
    return cfg


def send(p, path: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None):
    base = {"Cookie": ALL_COOKIES, "User-Agent": UA, "Origin": "https://localhost",
            "Referer": "https://localhost/item?email=canary.person%40example.com",
            "Authorization": "Basic c3RhZ2luZzpzZWNyZXQ=", "X-Api-Key": "site-api-key"}  # a site behind auth
    return request(p.port, path, tls=tls_context(p.ca), method=method, headers={**base, **(headers or {})},
                   body=body)


def decoded_text(rec: Recorded) -> str:
    return all_text(rec.path) + " " + all_text(rec.body) + " " + " ".join(v for vs in rec.headers.values() for v in vs)


# Beacons that name no address: the gateway adds the visitor's, truncated, in the vendor's field.
BARE = [
    ("/v1/t", "text/plain", json.dumps({"event": "page_view", "anonymousId": "a1"}).encode()),
    ("/2/httpapi", "application/json", json.dumps({"api_key": "k", "events": [
        {"event_type": "page_view", "device_id": "d1"}, {"event_type": "page_view", "ip": "$remote"}]}).encode()),
    ("/e/", "application/json", json.dumps({"event": "page_view", "properties": {"distinct_id": "x",
                                                                               "token": "phc"}}).encode()),
    ("/mp/collect?measurement_id=G-1&api_secret=s", "application/json",
     json.dumps({"client_id": "1.2", "events": [{"name": "page_view"}]}).encode()),
    ("/g/collect?v=2&tid=G-1&en=page_view&cid=1.2", "", b""),
]


def test_every_vendor_goes_straight_to_the_vendor_scrubbed(tmp_path, origin, vendor):
    vendors = sorted({c.vendor for c in CASES})
    cfg = config(tmp_path, {v: vendor.url for v in vendors})
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    try:
        replies = []
        for case in CASES:
            b = case.beacon
            headers = {k: v for k, v in (("Content-Type", b.content_type), ("Content-Encoding", b.content_encoding))
                       if v}
            replies.append(send(p, b.path + ("?" + b.query if b.query else ""), method=b.method, headers=headers,
                                body=b.body or None))
        for path, ctype, body in BARE:
            assert send(p, path, method="POST" if body else "GET", headers={"Content-Type": ctype},
                        body=body or None).status == 204
        page = send(p, "/index.html")
        forwarded = {v: metric(p, "privproxy_vendor_forwards_total", **{"class": "2xx", "vendor": v}) for v in vendors}
        responses = metric(p, "privproxy_responses_total", **{"class": "2xx", "source": "vendor"})
        records = p.log_records(wait_for=len(CASES) + len(BARE) + 1)
    finally:
        p.stop()
    assert page.status == 200 and [r.path for r in origin.requests] == ["/index.html"]  # no beacon at the origin
    assert len(vendor.requests) == len(CASES) + len(BARE)
    for case, reply, rec in zip(CASES, replies, vendor.requests[:len(CASES)], strict=True):
        where = (case.vendor, case.name)
        # The vendor's answer, with privproxy's HSTS instead of the vendor's, no Alt-Svc or Server banner, CORS kept,
        # and its tracking cookie removed (as the origin's would be) while its own preference cookie passes, Secure.
        assert reply.status == 204, where
        assert reply.header("Strict-Transport-Security").startswith("max-age=63072000"), where
        assert reply.header("Alt-Svc") is None and reply.header("Server") is None, where
        assert reply.header("Access-Control-Allow-Origin") == "https://localhost", where
        cookies = reply.all("Set-Cookie")
        assert not [c for c in cookies if c.startswith("_ga=")] and cookies[0].startswith("vendor_pref=1"), where
        assert "Secure" in cookies[0], where
        # What the vendor got: the canonical path, its own Host over SNI `localhost`, nothing identifying.
        assert rec.path.split("?")[0] == case.beacon.path, where
        assert rec.headers["host"] == [f"localhost:{vendor.port}"], where
        text = decoded_text(rec)
        assert not [c for c in CANARIES if c in text], where
        assert CLIENT_IP not in text and "site-session-secret" not in text and "6099" not in text, where
        assert "x-request-id" not in rec.headers and "x-forwarded-host" not in rec.headers, where
        assert rec.headers["x-forwarded-for"] == [TRUNCATED], where  # the address every collector reads
        assert "authorization" not in rec.headers and "x-api-key" not in rec.headers, where  # the site's, not theirs
        assert rec.headers.get("referer") == ["https://localhost/"], where  # as a browser sends it cross-origin
        for marker in case.keep:
            assert marker in text, (where, marker)
    assert set(vendor.sni) == {"localhost"}
    by_name = {(c.vendor, c.name): rec for c, rec in zip(CASES, vendor.requests[:len(CASES)], strict=True)}
    # An address the SDK put in the beacon is truncated where it is; a beacon without one gets the visitor's,
    # truncated, where the vendor reads it.
    assert json.loads(by_name[("segment", "track-text-plain")].body)["context"]["ip"] == "203.0.113.0"
    bare = {path: vendor.requests[len(CASES) + i] for i, (path, _, _) in enumerate(BARE)}
    assert json.loads(bare["/v1/t"].body)["context"]["ip"] == TRUNCATED
    assert {e["ip"] for e in json.loads(bare["/2/httpapi"].body)["events"]} == {TRUNCATED}  # "$remote" too
    assert json.loads(bare["/e/"].body)["properties"]["$ip"] == TRUNCATED
    assert json.loads(bare["/mp/collect?measurement_id=G-1&api_secret=s"].body)["ip_override"] == TRUNCATED
    assert f"_uip={TRUNCATED}" in bare["/g/collect?v=2&tid=G-1&en=page_view&cid=1.2"].path
    assert by_name[("mixpanel", "get-base64")].headers["x-real-ip"] == [TRUNCATED]
    # Only the vendor's own cookies, pseudonymized.
    ga_cookie = by_name[("ga4", "get")].headers["cookie"][0]
    assert ga_cookie.startswith("_ga=") and "_fbp" not in ga_cookie and "session" not in ga_cookie
    assert "cookie" not in by_name[("segment", "batch")].headers, by_name[("segment", "batch")].headers.get("cookie")
    assert sum(forwarded.values()) == len(CASES) + len(BARE) and responses >= len(CASES)
    beacon_records = [r for r in records if r["path"] != "/index.html"][:len(CASES)]
    assert {r["source"] for r in beacon_records} == {"vendor"} and {r["outcome"] for r in beacon_records} == {
        "forwarded"}
    assert {r["vendor"] for r in beacon_records} == set(vendors)
    assert "source" not in [r for r in records if r["path"] == "/index.html"][0]


def test_prefix_stripped_and_unlisted_vendor_keeps_going_to_the_upstream(tmp_path, origin, vendor):
    cfg = config(tmp_path, {"posthog": "{url: " + vendor.url + ", strip_prefix: /ingest}"})
    p = start_proxy(tmp_path / "p", origin.url, config=cfg)
    body = json.dumps({"event": "page_view", "properties": {"distinct_id": "CANARYCID", "token": "phc"}}).encode()
    try:
        prefixed = send(p, "/ingest/e/?ver=1", method="POST", headers={"Content-Type": "application/json"},
                        body=body)
        plain = send(p, "/e/", method="POST", headers={"Content-Type": "application/json"}, body=body)
        segment = send(p, "/v1/t", method="POST", headers={"Content-Type": "application/json"},
                       body=json.dumps({"event": "page_view", "userId": "CANARYUID"}).encode())
    finally:
        p.stop()
    assert prefixed.status == plain.status == 204 and segment.status == 200
    assert [r.path for r in vendor.requests] == ["/e/?ver=1", "/e/"]
    assert [r.path for r in origin.requests] == ["/v1/t"]  # not listed in forward: today's behaviour
    assert "CANARYUID" not in origin.requests[0].body.decode()


def test_a_vendor_down_slow_or_untrusted_gets_a_clean_error_and_nothing_reaches_the_origin(tmp_path, origin,
                                                                                         authority):
    other = Vendor(Authority("not the configured CA"), tmp_path)
    silent = Silent()
    cfg = config(tmp_path, {"ga4": f"https://localhost:{closed_port()}", "segment": f"https://localhost:{silent.port}",
                            "plausible": other.url})
    p = start_proxy(tmp_path / "p", origin.url, "--upstream-timeout", "1", config=cfg, metrics=True)
    try:
        down = send(p, "/g/collect?v=2&tid=G-1&en=page_view&cid=CANARYCID.1")
        t0 = time.monotonic()
        slow = send(p, "/v1/t", method="POST", headers={"Content-Type": "application/json"},
                    body=b'{"event": "page_view", "userId": "CANARYUID"}')
        waited = time.monotonic() - t0
        untrusted = send(p, "/api/event", method="POST", headers={"Content-Type": "text/plain"},
                         body=b'{"n": "pageview", "u": "https://localhost/", "d": "localhost"}')
        failures = {r: metric(p, "privproxy_vendor_failures_total", reason=r, vendor=v)
                    for v, r in (("ga4", "connect"), ("segment", "timeout"), ("plausible", "tls"))}
        records = p.log_records(wait_for=3)
    finally:
        p.stop()
        silent.close()
        other.close()
    assert (down.status, slow.status, untrusted.status) == (502, 504, 502)
    for reply in (down, slow, untrusted):
        assert reply.header("Strict-Transport-Security") and reply.header("Server") is None
        assert b"localhost" not in reply.body and b"Errno" not in reply.body
    assert waited < 10
    assert origin.requests == [] and other.requests == []
    assert failures == {"connect": 1.0, "timeout": 1.0, "tls": 1.0}
    assert [(r["outcome"], r["source"]) for r in records] == [
        ("upstream_error", "proxy"), ("upstream_timeout", "proxy"), ("upstream_error", "proxy")]


def test_tracker_scripts_are_fetched_without_the_visitor_cached_and_served_stale(tmp_path, origin, authority):
    v = Vendor(authority, tmp_path, responses={
        "/js/script.js": (200, [("Content-Type", "application/javascript"), ("Cache-Control", "public, max-age=60"),
                                ("Set-Cookie", "vendor=1")], b"console.log('tracker');"),
        "/js/short.js": (200, [("Content-Type", "text/plain"), ("Cache-Control", "max-age=0")], b"short();"),
    })
    cfg = config(tmp_path, {}, scripts={"/js/script.js": f"{v.url}/js/script.js",
                                        "/stats/short.js": f"{v.url}/js/short.js?id=G-1"})
    cfg.write_text(cfg.read_text().replace("  forward:\n", ""))
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    try:
        first = send(p, "/js/script.js")
        second = send(p, "/js/script.js")
        short1 = send(p, "/stats/short.js")
        v.responses["/js/short.js"] = (503, [], b"down")  # the vendor fails
        stale = send(p, "/stats/short.js")
        hits = metric(p, "privproxy_vendor_scripts_total", result="hit", script="/js/script.js")
        misses = metric(p, "privproxy_vendor_scripts_total", result="miss", script="/js/script.js")
        stales = metric(p, "privproxy_vendor_scripts_total", result="stale", script="/stats/short.js")
    finally:
        p.stop()
        v.close()
    assert first.status == second.status == short1.status == stale.status == 200
    assert first.body == second.body == b"console.log('tracker');"
    assert first.header("Content-Type") == "application/javascript"
    assert short1.header("Content-Type") == "text/javascript; charset=utf-8"  # a .js served as text/plain: fixed
    assert first.header("X-Content-Type-Options") == "nosniff" and first.header("Set-Cookie") is None
    assert first.header("Cache-Control").startswith("public, max-age=") and first.header("Strict-Transport-Security")
    assert stale.body == b"short();"
    assert (hits, misses, stales) == (1.0, 1.0, 1.0)
    assert origin.requests == []
    # the second /js/script.js came from the cache; short.js (max-age=0) was asked for again
    assert [r.path for r in v.requests] == ["/js/script.js", "/js/short.js?id=G-1", "/js/short.js?id=G-1"]
    for rec in v.requests:
        assert not {"cookie", "referer", "x-forwarded-for", "x-real-ip", "origin"} & rec.headers.keys()
        assert rec.headers["user-agent"] == ["privproxy"]


def test_a_script_never_fetched_from_a_failing_vendor_is_a_502(tmp_path, origin, authority):
    cfg = config(tmp_path, {}, scripts={"/js/script.js": f"https://localhost:{closed_port()}/js/script.js"})
    cfg.write_text(cfg.read_text().replace("  forward:\n", ""))
    p = start_proxy(tmp_path / "p", origin.url, config=cfg)
    try:
        r = send(p, "/js/script.js")
    finally:
        p.stop()
    assert r.status == 502 and origin.requests == []


def test_consent_per_vendor_only_ever_stricter(tmp_path, origin, vendor):
    from tests.unit.test_vendor_consent import gpp, tc_string, us_section

    cfg = config(tmp_path, {"meta_pixel": vendor.url,
                            "ga4": "{url: " + vendor.url + ", purposes: [analytics], gvl_id: 755}"})
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    pixel = "/tr?id=1&ev=PageView&fbp=fb.1.1.CANARYCID"
    ga = "/g/collect?v=2&tid=G-1&en=page_view&cid=1.2"
    try:
        gpc = send(p, pixel, headers={"Sec-GPC": "1"})
        no_gpc = send(p, pixel)
        sale_opt_out = send(p, pixel + "&gpp=" + gpp({7: us_section({18: 1})}) + "&gpp_sid=7")
        refused = send(p, ga, headers={"Cookie": "euconsent-v2=" + tc_string({1, 8, 9}, {12})})
        agreed = send(p, ga, headers={"Cookie": "euconsent-v2=" + tc_string({1, 8, 9}, {755})})
        no_cmp = send(p, ga)
        analytics_denied = send(p, ga + "&gcs=G100")  # Consent Mode on the hit: analytics_storage denied
        ads_denied_only = send(p, ga + "&gcd=13p3v3v3v5l1")  # ad_storage denied: GA4 is used for analytics
        gpc_json = send(p, "/.well-known/gpc.json")
        opt_outs = (metric(p, "privproxy_vendor_opt_outs_total", signal="gpc", vendor="meta_pixel"),
                    metric(p, "privproxy_vendor_opt_outs_total", signal="gpp", vendor="meta_pixel"),
                    metric(p, "privproxy_vendor_opt_outs_total", signal="tcf", vendor="ga4"),
                    metric(p, "privproxy_vendor_opt_outs_total", signal="consent_mode", vendor="ga4"))
    finally:
        p.stop()
    assert (gpc.status, sale_opt_out.status, refused.status) == (204, 204, 204)  # answered here: no SDK retry
    assert (no_gpc.status, agreed.status, no_cmp.status) == (204, 204, 204)  # the vendor's own 204
    assert (analytics_denied.status, ads_denied_only.status) == (204, 204)
    assert [r.path.split("?")[0] for r in vendor.requests] == ["/tr", "/g/collect", "/g/collect", "/g/collect"]
    assert "gcd=13p3v3v3v5l1" in vendor.requests[-1].path and "gcs=G100" not in vendor.requests[-1].path
    assert origin.requests == [] and opt_outs == (1.0, 1.0, 1.0, 1.0)
    assert gpc_json.status == 200 and json.loads(gpc_json.body) == {"gpc": True}
