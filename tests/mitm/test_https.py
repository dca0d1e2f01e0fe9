"""EnforceHttps: HSTS and Secure cookies on every HTTPS answer, the origin's and the proxy's own; never over plain
HTTP (RFC 6797 §7.2); a failure is counted and the answer still goes out (C1)."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.test import tutils

from privproxy.mitm import flowview
from privproxy.mitm import https as mitm_https
from tests.mitm.conftest import make_flow

HSTS = "max-age=63072000; includeSubDomains"


def components(addons):
    by_name = {type(a).__name__: a for a in addons}
    return by_name["PrivacyFilter"], by_name["EnforceHttps"]


def answered(addons, tls: bool = True, headers=()):
    pf, _ = components(addons)
    f = make_flow("/", tls=tls)
    pf.requestheaders(f)
    if f.response is None:
        f.response = tutils.tresp(headers=http.Headers(list(headers)))
    return f


def test_the_origins_hsts_is_replaced_and_cookies_made_secure(chain):
    _, addons, _ = chain
    f = answered(addons, headers=[(b"strict-transport-security", b"max-age=0"), (b"set-cookie", b"a=1")])
    components(addons)[1].responseheaders(f)
    assert f.response.headers.get_all("strict-transport-security") == [HSTS]
    assert f.response.headers.get_all("set-cookie") == ["a=1; Secure"]


def test_plain_http_gets_no_hsts(chain):
    _, addons, _ = chain
    f = answered(addons, tls=False)  # the redirect to HTTPS
    assert f.response.status_code == 308
    components(addons)[1].response(f)
    assert "strict-transport-security" not in f.response.headers


def test_answers_without_a_responseheaders_event_get_it_in_response(chain):
    _, addons, _ = chain
    f = answered(addons)
    components(addons)[1].response(f)
    assert f.response.headers["strict-transport-security"] == HSTS


def test_a_failure_is_counted_and_the_answer_goes_out(chain, monkeypatch):
    _, addons, shared = chain
    f = answered(addons, headers=[(b"set-cookie", b"a=1")])

    def boom(*a, **k):
        raise RuntimeError("injected")

    monkeypatch.setattr(flowview, "secure_response", boom)
    components(addons)[1].responseheaders(f)
    assert f.response.headers.get_all("set-cookie") == ["a=1"]
    assert shared.metrics.registry.get_sample_value("privproxy_scrub_failures_total", {"stage": "https_headers"}) == 1


def test_hsts_for_the_proxys_own_answers(chain):
    _, addons, shared = chain
    assert mitm_https.hsts_for(shared, None, tls=True) == HSTS
    assert mitm_https.hsts_for(shared, None, tls=False) is None
    plain = answered(addons, tls=False)
    assert mitm_https.hsts_for(shared, plain, tls=True) is None  # classified as plain HTTP: never
