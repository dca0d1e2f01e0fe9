"""Beacons of every vendor through the real `privproxy run` over TLS: the collector behind the proxy gets no
identifier, still gets a beacon in the vendor's own format, and undecodable or oversized beacons never
reach it (C4, C6, C8, C13)."""

from __future__ import annotations

import gzip
import urllib.request

from tests.helpers import CLIENT_IP, REPO, request, start_proxy, tls_context
from tests.unit.vendors.beacons import CANARIES, CASES
from tests.unit.vendors.test_codecs import all_text

ALL_COOKIES = ("_ga=GA1.1.CANARYCID.1700000000; _ga_ABC=GS1.1.CANARYSID; session=site-session-secret; "
               "_fbp=fb.1.1700000000.CANARYCIDFBP; _fbc=fb.1.1700000000.CANARYFBCLID; sp=CANARYCID-sp; "
               "_pk_id.1.abcd=CANARYCID.1700000000; ajs_user_id=CANARYUID; kndctr_X_AdobeOrg_identity=CANARYECID")


def test_every_vendor_scrubbed_on_the_wire(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, config=REPO / "filters.yaml", metrics=True)
    ctx = tls_context(p.ca)
    try:
        sent = 0
        for case in CASES:
            b = case.beacon
            headers = {"Cookie": ALL_COOKIES, "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
                       "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36",
                       "Referer": "https://localhost/item?email=canary.person%40example.com"}
            if b.content_type:
                headers["Content-Type"] = b.content_type
            if b.content_encoding:
                headers["Content-Encoding"] = b.content_encoding
            path = b.path + ("?" + b.query if b.query else "")
            r = request(p.port, path, tls=ctx, method=b.method, headers=headers, body=b.body or None)
            assert r.status == 200, (case.vendor, case.name, r.status)
            sent += 1
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    got = origin.requests
    assert len(got) == sent
    for case, rec in zip(CASES, got, strict=True):
        assert rec.path.split("?")[0] == case.beacon.path
        body = rec.body
        if rec.headers.get("content-encoding", [""])[0] == "gzip":
            body = gzip.decompress(body)
        text = all_text(rec.path) + " " + all_text(body) + " " + " ".join(
            v for k, vs in rec.headers.items() for v in vs)
        leaked = [c for c in CANARIES if c in text]
        assert not leaked, (case.vendor, case.name, leaked)
        assert CLIENT_IP not in text and "site-session-secret" not in text
        assert "6099" not in text  # the User-Agent header is generalized toward the vendor
        for marker in case.keep:
            assert marker in text, (case.vendor, case.name, marker)
        if rec.body:
            assert int(rec.headers["content-length"][0]) == len(rec.body)
    # Only the cookies each vendor's collector reads, pseudonymized.
    ga = got[0].headers.get("cookie", [""])[0]
    assert ga.startswith("_ga=") and "_fbp" not in ga and "session" not in ga and "sp=" not in ga
    assert "cookie" not in got[[c.vendor for c in CASES].index("segment")].headers
    assert 'privproxy_beacons_total{consent="none",vendor="ga4"}' in metrics
    assert 'privproxy_beacon_fields_unclassified_total{vendor="ga4"}' in metrics


def test_undecodable_and_oversized_beacons_are_not_forwarded(tmp_path, origin):
    cfg = tmp_path / "filters.yaml"
    cfg.write_text((REPO / "filters.yaml").read_text().replace("max_body_kb: 512", "max_body_kb: 1"))
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    ctx = tls_context(p.ca)
    try:
        bad = request(p.port, "/v1/t", tls=ctx, method="POST", headers={"Content-Type": "application/json"},
                      body=b'{"userId": "CANARYUID", "anonymousId": ')
        big = request(p.port, "/v1/t", tls=ctx, method="POST", headers={"Content-Type": "application/json"},
                      body=b'{"userId": "CANARYUID", "pad": "' + b"x" * 2048 + b'"}')
        page = request(p.port, "/index.html", tls=ctx)
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
        records = p.log_records(wait_for=3)
    finally:
        p.stop()
    assert bad.status == 204 and big.status == 413 and page.status == 200
    assert [r.path for r in origin.requests] == ["/index.html"]  # neither beacon reached the collector
    assert 'privproxy_beacon_failures_total{reason="bad_json",vendor="segment"} 1.0' in metrics
    assert 'privproxy_beacon_failures_total{reason="too_large",vendor="segment"} 1.0' in metrics
    assert [r["status"] for r in records] == [204, 413, 200]


def test_recorded_sdk_beacons_through_the_real_proxy(tmp_path, origin):
    """What the vendors' own Node SDKs sent (tests/unit/vendors/recordings), replayed through `privproxy run`."""
    from tests.unit.vendors.test_recordings import REQUESTS, SECRETS
    import base64

    p = start_proxy(tmp_path / "p", origin.url, config=REPO / "filters.yaml")
    ctx = tls_context(p.ca)
    try:
        for _, r in REQUESTS:
            headers = {k: v for k, v in r["headers"].items() if k in ("content-type", "content-encoding", "user-agent")}
            body = base64.b64decode(r["body"])
            got = request(p.port, r["path"], tls=ctx, method=r["method"], headers=headers, body=body or None)
            assert got.status == 200, (r["sdk"], got.status)
    finally:
        p.stop()
    assert len(origin.requests) == len(REQUESTS)
    for (_, r), rec in zip(REQUESTS, origin.requests, strict=True):
        text = all_text(rec.path) + " " + all_text(rec.body)
        assert not [s for s in SECRETS if s in text], r["sdk"]
        assert rec.path.split("?")[0] == r["path"].split("?")[0]
