"""PrivacyFilter under taddons: forwarded headers, routing, and fail-closed behaviour (C2, C8, C15)."""

from __future__ import annotations

from privproxy import pipeline
from privproxy.mitm import flowview
from privproxy.mitm.filter import PrivacyFilter
from privproxy.mitm.https import EnforceHttps
from mitmproxy import http
from mitmproxy.test import tutils

from tests.mitm.conftest import make_flow


def run_requestheaders(addons, flow):
    for a in addons:
        if hasattr(a, "requestheaders"):
            a.requestheaders(flow)


def test_spoofed_headers_replaced_by_truncated_client(chain):
    # 000 §3 / C15: a client cannot choose the address the origin sees
    tctx, addons, shared = chain
    f = make_flow("/p", headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "203.0.113.9"),
                                 ("True-Client-IP", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"),
                                 ("X-Request-ID", "client-chosen-id")])
    run_requestheaders(addons, f)
    h = f.request.headers
    assert h.get_all("x-forwarded-for") == ["127.9.8.0"]
    assert "x-real-ip" not in h and "true-client-ip" not in h and "forwarded" not in h
    assert h["x-forwarded-proto"] == "https" and h["x-request-id"] != "client-chosen-id"
    assert shared.metrics.registry.get_sample_value("privproxy_forwarding_headers_ignored_total",
                                                {"reason": "untrusted_peer"}) == 1
    assert shared.metrics.registry.get_sample_value("privproxy_ip_truncations_total", {"family": "ipv4"}) == 1


def test_ipv6_client(chain):
    tctx, addons, shared = chain
    f = make_flow("/p", peer="2001:db8:abcd:12::7")
    run_requestheaders(addons, f)
    assert f.request.headers["x-forwarded-for"] == "2001:db8:abcd::"


def test_fail_closed_when_the_pipeline_raises(chain, monkeypatch):
    # mitmproxy fails open: our hook must not. A request privproxy could not read is answered, not forwarded.
    tctx, addons, shared = chain

    def boom(*a, **k):
        raise RuntimeError("injected")

    monkeypatch.setattr(pipeline, "begin", boom)
    f = make_flow("/p", headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "203.0.113.9")])
    filt = next(a for a in addons if isinstance(a, PrivacyFilter))
    filt.requestheaders(f)
    assert f.response is not None and f.response.status_code == 500 and f.request.stream is False
    assert "x-forwarded-for" not in f.request.headers and "x-real-ip" not in f.request.headers
    assert shared.metrics.registry.get_sample_value("privproxy_scrub_failures_total",
                                                {"stage": "requestheaders"}) == 1


def test_site_routing_keeps_visitor_host(tmp_path, monkeypatch):
    from mitmproxy.test import taddons

    import privproxy.mitm
    from privproxy.mitm.shared import SharedState

    cfg = tmp_path / "f.yaml"
    cfg.write_text("version: 1\nsites:\n  blog:\n    hosts: [blog.example]\n    upstream: https://10.0.0.9:8443\n")
    shared = SharedState()
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(cfg))
        f = make_flow("/post/1", host="blog.example")
        run_requestheaders(addons, f)
        assert (f.request.scheme, f.request.host, f.request.port) == ("https", "10.0.0.9", 8443)
        assert f.request.host_header == "blog.example"
        g = make_flow("/", host="www.example")
        run_requestheaders(addons, g)
        assert (g.request.host, g.request.port) == ("127.0.0.1", 8080)  # default site: the mode's upstream


def test_plain_http_redirected(chain):
    # 001 §7.2: SSL for everything
    tctx, addons, shared = chain
    f = make_flow("/a?b=c", tls=False)
    run_requestheaders(addons, f)
    assert f.response.status_code == 308
    assert f.response.headers["location"] == "https://shop.example/a?b=c"
    assert not f.request.stream


def test_bad_host_is_refused_not_redirected(chain):
    tctx, addons, shared = chain
    f = make_flow("/", tls=False, host="evil.example/@x")
    run_requestheaders(addons, f)
    assert f.response.status_code == 400 and "location" not in f.response.headers


def test_https_headers(chain):
    tctx, addons, shared = chain
    from mitmproxy.test import tutils

    f = make_flow("/")
    run_requestheaders(addons, f)
    f.response = tutils.tresp()
    f.response.headers.add("Set-Cookie", "sid=1; HttpOnly")
    next(a for a in addons if isinstance(a, EnforceHttps)).responseheaders(f)
    assert f.response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert f.response.headers.get_all("set-cookie") == ["sid=1; HttpOnly; Secure"]


def test_tracking_cookies_pseudonymized_for_the_origin_site_cookies_untouched(chain):
    # C4 (002, 001 §8.2.2): the origin gets no raw analytics id; the site's session cookie is not the proxy's business
    tctx, addons, shared = chain
    f = make_flow("/p", headers=[("Cookie", "sessionid=s3ss10n; _ga=GA1.1.111222333.1700000000; _gcl_aw=GCL.1.clk"),
                                 ("Cookie", "_fbp=fb.1.1700000000.987654321; lang=ja")])
    run_requestheaders(addons, f)
    sent = f.request.headers.get_all("cookie")
    assert len(sent) == 1
    cookie = dict(p.split("=", 1) for p in sent[0].split("; "))
    assert cookie["sessionid"] == "s3ss10n" and cookie["lang"] == "ja"
    assert "111222333" not in sent[0] and "987654321" not in sent[0] and "clk" not in sent[0]
    assert cookie["_ga"] != "GA1.1.111222333.1700000000" and cookie["_ga"]


def test_tracking_set_cookie_is_not_set_without_consent(chain):
    tctx, addons, shared = chain
    f = make_flow("/p")
    run_requestheaders(addons, f)
    f.response = tutils.tresp(headers=http.Headers([
        (b"set-cookie", b"_ga=GA1.1.5.6; Path=/; Max-Age=63072000"),
        (b"set-cookie", b"sessionid=abc; HttpOnly"),
        (b"set-cookie", b"_fbp=fb.1.2.3; Path=/"),
    ]))
    for a in addons:
        if hasattr(a, "responseheaders"):
            a.responseheaders(f)
    got = f.response.headers.get_all("set-cookie")
    assert [c.split("=", 1)[0] for c in got] == ["sessionid"]
    assert "Secure" in got[0]


def test_cookie_scrub_failure_drops_cookies(chain, monkeypatch):
    tctx, addons, shared = chain
    from privproxy import scrub

    def boom(*a, **k):
        raise ValueError("injected")

    monkeypatch.setattr(scrub.Scrubber, "cookie_header", boom)
    f = make_flow("/p", headers=[("Cookie", "_ga=GA1.1.111222333.1700000000")])
    run_requestheaders(addons, f)
    assert "cookie" not in f.request.headers
    assert f.request.headers["x-forwarded-for"] == "127.9.8.0"


def beacon_flow(path: str, body: bytes, ctype: str = "application/json", headers=()):
    f = make_flow(path, headers=[("content-type", ctype), ("content-length", str(len(body))), *headers])
    f.request.method = "POST"
    f.request.raw_content = body
    return f


def run_request(addons, flow):
    run_requestheaders(addons, flow)
    if flow.response is None:
        for a in addons:
            if hasattr(a, "request"):
                a.request(flow)


def test_beacon_is_buffered_scrubbed_and_re_encoded(chain):
    tctx, addons, shared = chain
    body = b'{"type": "track", "event": "buy", "userId": "member-4711", "properties": {"email": "a@b.example"}}'
    f = beacon_flow("/v1/t", body, headers=[("cookie", "session=x; _ga=GA1.1.1.2"), ("sec-ch-ua-model", "Pixel 8"),
                                            ("sec-ch-ua-mobile", "?1")])
    run_request(addons, f)
    assert f.response is None and not f.request.stream  # buffered, then forwarded
    sent = f.request.raw_content
    assert b"member-4711" not in sent and b"a@b.example" not in sent and b'"event":"buy"' in sent
    assert f.request.headers["content-length"] == str(len(sent))
    assert "cookie" not in f.request.headers  # Segment's collector reads no cookie
    assert "sec-ch-ua-model" not in f.request.headers and f.request.headers["sec-ch-ua-mobile"] == "?1"
    assert shared.metrics.registry.get_sample_value("privproxy_beacons_total",
                                                {"vendor": "segment", "consent": "none"}) == 1


def test_page_request_bodies_stream_and_bodiless_requests_are_not_put_in_streaming_mode(chain):
    tctx, addons, shared = chain
    f = make_flow("/upload", headers=[("content-length", "5000000")])
    run_requestheaders(addons, f)
    assert f.request.stream is True  # an upload passes through, never buffered
    f = make_flow("/index.html")
    run_requestheaders(addons, f)
    assert f.request.stream is False  # nothing to stream: one write upstream


def test_beacon_over_the_size_limit_gets_413_without_forwarding(chain):
    tctx, addons, shared = chain
    f = make_flow("/v1/t", headers=[("content-length", str(10 * 1024 * 1024))])
    f.request.method = "POST"
    run_requestheaders(addons, f)
    assert f.response is not None and f.response.status_code == 413
    assert shared.metrics.registry.get_sample_value("privproxy_beacon_failures_total",
                                                {"vendor": "segment", "reason": "too_large"}) == 1


def test_undecodable_beacon_answered_204(chain):
    tctx, addons, shared = chain
    f = beacon_flow("/mp/collect", b'{"client_id": "123.456", broken')
    run_request(addons, f)
    assert f.response is not None and f.response.status_code == 204
    assert shared.metrics.registry.get_sample_value("privproxy_beacon_failures_total",
                                                {"vendor": "ga4", "reason": "bad_json"}) == 1


def test_codec_crash_fails_closed(chain, monkeypatch):
    # mitmproxy fails open: an exception escaping the hook would forward the beacon unchanged
    tctx, addons, shared = chain

    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(pipeline, "scrub_beacon", boom)
    f = beacon_flow("/v1/t", b'{"userId": "member-4711"}')
    run_request(addons, f)
    assert f.response is not None and f.response.status_code == 204
    assert shared.metrics.registry.get_sample_value("privproxy_scrub_failures_total", {"stage": "beacon"}) == 1


def test_a_beacon_is_logged_by_its_path_only(chain):
    # 001 §9.2.1: the query of a beacon is the vendor's payload, with ids only its codec knows (Matomo `_id`)
    tctx, addons, shared = chain
    f = make_flow("/matomo.php?idsite=1&rec=1&_id=0123456789abcdef&_cvar=%7B%7D&action_name=Home")
    f.request.raw_content = b""
    run_request(addons, f)
    assert f.response is None  # forwarded toward the vendor
    f.response = tutils.tresp(status_code=204, content=b"")
    for a in addons:
        for hook in ("responseheaders", "response"):
            if hasattr(a, hook):
                getattr(a, hook)(f)
    record = flowview.context(f).record
    assert record.path == "/matomo.php"
    assert "_id=" in f.request.path and "0123456789abcdef" not in f.request.path  # the vendor gets a pseudonym
