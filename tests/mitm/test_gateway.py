"""VendorGateway under taddons: a listed vendor's beacon is answered by the vendor (through a stand-in client), or
by privproxy's 502/504, never passed on to the upstream; scripts come from the cache (C4, C5, C15)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

import privproxy.mitm
from privproxy import gateway as core, script_cache
from privproxy.gateway import VendorAnswer, VendorError
from privproxy.metrics import Metrics
from privproxy.mitm import flowview
from privproxy.mitm.filter import PrivacyFilter
from privproxy.mitm.gateway import VendorGateway
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Outcome
from tests.helpers import REPO


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text((REPO / "filters.yaml").read_text().replace(
        "  max_body_kb: 512", "  forward: {segment: https://collector.example, meta_pixel: https://pixel.example}\n"
        "  scripts: {/js/script.js: https://cdn.example/js/script.js}\n  max_body_kb: 512", 1))
    shared = SharedState(Metrics())
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(cfg))
        yield addons, shared


def beacon(path: str = "/v1/t", body: dict | None = None, method: str = "POST", extra=()) -> http.HTTPFlow:
    data = json.dumps(body or {"event": "page_view", "anonymousId": "CANARYCID"}).encode() if method == "POST" else b""
    headers = http.Headers([(b"host", b"shop.example"), (b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), (b"cookie", b"_ga=GA1.1.1.2; s=secret"),
                            *extra])
    f = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(), headers=headers, content=data,
                                    host="127.0.0.1", port=8080), resp=False)
    f.client_conn.peername = ("127.9.8.7", 5555)
    f.client_conn.timestamp_tls_setup = 946681201
    f.client_conn.tls_version = "TLSv1.3"
    return f


def of(addons, cls):
    return next(a for a in addons if isinstance(a, cls))


class FakeClient:
    def __init__(self, answer=None, error: Exception | None = None) -> None:
        self.answer, self.error, self.sent = answer, error, []

    async def send(self, req):
        self.sent.append(req)
        if self.error is not None:
            raise self.error
        return self.answer


def through(addons, f, client: FakeClient):
    """requestheaders and request as mitmproxy runs them, awaiting what the gateway returns."""
    gw = of(addons, VendorGateway)
    gw.client = lambda ca: client
    filt = of(addons, PrivacyFilter)
    filt.requestheaders(f)
    gw.requestheaders(f)
    filt.request(f)
    pending = gw.request(f)
    if pending is not None:
        asyncio.run(pending)
    return pending


def test_a_listed_vendor_answers_and_its_cookies_meet_the_rules(chain):
    addons, shared = chain
    client = FakeClient(VendorAnswer(200, (("Content-Type", "application/json"), ("Set-Cookie", "_ga=GA1.1.9.9"),
                                           ("Set-Cookie", "pref=1"), ("Alt-Svc", "h3"),
                                           ("Access-Control-Allow-Origin", "https://shop.example")), b'{"ok":1}', 0.01))
    f = beacon()
    assert through(addons, f, client) is not None
    req = client.sent[0]
    assert req.url == "https://collector.example/v1/t" and dict(req.headers)["Host"] == "collector.example"
    assert "CANARYCID" not in req.body.decode() and json.loads(req.body)["context"]["ip"] == "127.9.8.0"
    assert f.response.status_code == 200 and f.response.raw_content == b'{"ok":1}'
    assert f.response.headers.get_all("set-cookie") == ["_ga=GA1.1.9.9", "pref=1"]
    assert "alt-svc" not in f.response.headers
    assert flowview.outcome_of(f) == Outcome.FORWARDED
    of(addons, PrivacyFilter).responseheaders(f)  # as mitmproxy emulates it for an answer set in `request`
    assert f.response.headers.get_all("set-cookie") == ["pref=1"]
    assert shared.metrics.registry.get_sample_value("privproxy_vendor_forwards_total",
                                                    {"vendor": "segment", "class": "2xx"}) == 1


@pytest.mark.parametrize(("error", "status", "outcome"), [
    (VendorError("timeout", 504), 504, Outcome.UPSTREAM_TIMEOUT),
    (VendorError("connect"), 502, Outcome.UPSTREAM_ERROR),
    (RuntimeError("a bug"), 502, Outcome.UPSTREAM_ERROR),
])
def test_a_failing_vendor_is_answered_here_never_passed_to_the_upstream(chain, error, status, outcome):
    addons, shared = chain
    f = beacon()
    through(addons, f, FakeClient(error=error))
    assert f.response is not None and f.response.status_code == status and flowview.outcome_of(f) == outcome
    assert b"collector.example" not in f.response.raw_content
    if isinstance(error, VendorError):
        assert shared.metrics.registry.get_sample_value("privproxy_vendor_failures_total",
                                                        {"vendor": "segment", "reason": error.reason}) == 1
    else:
        assert shared.metrics.registry.get_sample_value("privproxy_scrub_failures_total", {"stage": "beacon"}) == 1


def test_building_the_request_failing_is_a_502(chain, monkeypatch):
    addons, _ = chain

    def boom(*a, **k):
        raise ValueError("injected")

    monkeypatch.setattr(core, "vendor_request", boom)
    f = beacon()
    assert through(addons, f, FakeClient()) is None
    assert f.response.status_code == 502


def test_a_vendor_not_listed_goes_to_the_upstream_as_before(chain):
    addons, _ = chain
    f = beacon("/g/collect?v=2&tid=G-1&en=page_view", method="GET")
    client = FakeClient()
    assert through(addons, f, client) is None
    assert f.response is None and client.sent == [] and flowview.state_of(f).forward is None


def test_a_cached_script_is_served_without_the_network(chain):
    addons, shared = chain
    gw = of(addons, VendorGateway)
    gw.cache.store("https://cdn.example/js/script.js",
                   script_cache.Entry(b"tracker()", script_cache.JAVASCRIPT, time.monotonic(), 60.0))
    f = beacon("/js/script.js", method="GET")
    of(addons, PrivacyFilter).requestheaders(f)
    asyncio.run(gw.requestheaders(f))
    assert f.response.status_code == 200 and f.response.raw_content == b"tracker()"
    assert f.response.headers["content-type"] == script_cache.JAVASCRIPT
    assert f.response.headers["cache-control"].startswith("public, max-age=")
    assert shared.metrics.registry.get_sample_value("privproxy_vendor_scripts_total",
                                                    {"script": "/js/script.js", "result": "hit"}) == 1


def test_a_reload_that_changes_the_ca_gets_a_new_pool_and_retires_the_old(chain):
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.certs import Authority

    addons, _ = chain
    gw = of(addons, VendorGateway)
    pem = Authority("reload").root.public_bytes(Encoding.PEM)

    async def scenario():
        first = gw.client(b"")
        assert gw.client(b"") is first  # one pool while nothing changes
        second = gw.client(pem)
        assert second is not first and second.extra_ca == pem and len(gw._retiring) == 1
        await gw.done()  # shutdown: the retiring pool's wait is cut short, the live one closed
        await asyncio.sleep(0)
        assert gw._clients == {} and not gw._retiring

    asyncio.run(scenario())


def test_gpc_keeps_an_advertising_vendors_beacons_and_gpc_json_says_so(chain):
    addons, shared = chain
    client = FakeClient(VendorAnswer(200, (), b"", 0.01))
    opted_out = beacon("/tr?id=1&ev=PageView", method="GET", extra=[(b"sec-gpc", b"1")])
    through(addons, opted_out, client)
    assert opted_out.response.status_code == 204 and client.sent == []
    assert flowview.outcome_of(opted_out) == Outcome.NOT_FORWARDED
    assert shared.metrics.registry.get_sample_value("privproxy_vendor_opt_outs_total",
                                                    {"vendor": "meta_pixel", "signal": "gpc"}) == 1
    analytics = beacon(extra=[(b"sec-gpc", b"1")])  # segment is used for analytics: GPC does not refuse it
    through(addons, analytics, client)
    assert analytics.response.status_code == 200 and len(client.sent) == 1
    g = beacon("/.well-known/gpc.json", method="GET")
    through(addons, g, client)
    assert g.response.status_code == 200 and json.loads(g.response.raw_content) == {"gpc": True}
    assert g.response.headers["content-type"] == "application/json"


def test_concurrent_misses_wait_for_one_fetch_and_a_failed_fetch_serves_the_stale_copy(chain):
    addons, shared = chain
    gw = of(addons, VendorGateway)
    calls = []

    class Scripts:
        fail = False

        async def get(self, url, headers, max_body):
            calls.append((url, dict(headers)))
            await asyncio.sleep(0.05)
            if Scripts.fail:
                raise VendorError("connect")
            return VendorAnswer(200, (("Content-Type", "text/javascript"), ("Cache-Control", "max-age=0")),
                                b"tracker()", 0.05)

    gw.client = lambda ca: Scripts()

    async def two():
        flows = [beacon("/js/script.js", method="GET") for _ in range(2)]
        for f in flows:
            of(addons, PrivacyFilter).requestheaders(f)
        await asyncio.gather(*(gw.requestheaders(f) for f in flows))
        return flows

    first, second = asyncio.run(two())
    assert len(calls) == 1 and first.response.raw_content == second.response.raw_content == b"tracker()"
    assert calls[0][1] == dict(script_cache.REQUEST_HEADERS)  # nothing of the visitor: no cookie, address, Referer
    Scripts.fail = True
    stale = beacon("/js/script.js", method="GET")
    of(addons, PrivacyFilter).requestheaders(stale)
    asyncio.run(gw.requestheaders(stale))
    assert stale.response.status_code == 200 and stale.response.raw_content == b"tracker()"
    assert shared.metrics.registry.get_sample_value("privproxy_vendor_scripts_total",
                                                    {"script": "/js/script.js", "result": "stale"}) == 1
