"""A request's objects are freed by reference counting as soon as its flow is let go: privproxy's addons keep no
reference cycle through a flow (its state, views, record and closures). A cycle would leave every request's objects
to Python's cyclic collector, which cost about 5 % of a beacon's CPU when mitmproxy's HTTP stream still had one
(GuardedHttpStream._end, tests/mitm/test_internals.py)."""

from __future__ import annotations

import gc
import weakref

import pytest
from mitmproxy import flow as mflow, http
from mitmproxy.test import tutils

from tests.mitm.conftest import collector_off, make_flow
from tests.mitm.test_filter import beacon_flow, run_request

GA4 = "/g/collect?v=2&tid=G-ABC123&cid=1234567890.1700000000&uid=member-4711&en=page_view" \
      "&dl=https%3A%2F%2Fshop.example%2Fitem%3Femail%3Dvisitor%2540example.com"
SEGMENT = b'{"type": "track", "event": "buy", "userId": "member-4711", "properties": {"email": "a@b.example"}}'


def page():
    return make_flow("/products?email=visitor%40example.com", headers=[("cookie", "_ga=GA1.1.1.2; session=s"),
                                                                      ("referer", "https://shop.example/?uid=7")])


def requests():
    return {
        "page": page,
        "ga4 beacon": lambda: make_flow(GA4, headers=[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")]),
        "json beacon": lambda: beacon_flow("/v1/t", SEGMENT, headers=[("sec-ch-ua-model", "Pixel 8")]),
        "plain http": lambda: make_flow("/products", tls=False),
        "bad host": lambda: make_flow("/", host="shop.example\\evil"),
    }


def finish(addons, f: http.HTTPFlow, failed: bool) -> None:
    if failed:
        f.error = mflow.Error("connection closed")
        hooks = ("error",)
    else:
        if f.response is None:
            f.response = tutils.tresp(headers=http.Headers([(b"set-cookie", b"_ga=GA1.1.5.6; Path=/")]))
        hooks = ("responseheaders", "response")
    for hook in hooks:
        for a in addons:
            if hasattr(a, hook):
                getattr(a, hook)(f)


@pytest.mark.parametrize("failed", [False, True], ids=["answered", "failed"])
@pytest.mark.parametrize("kind", list(requests()))
def test_a_request_through_the_chain_leaves_no_reference_cycle(chain, kind, failed, unchecked_messages):
    tctx, addons, shared = chain
    make = requests()[kind]
    for _ in range(2):  # the first request fills the caches a request may fill
        f = make()
        run_request(addons, f)
        finish(addons, f, failed)
    del f
    gc.collect()
    with collector_off() as garbage:
        f = make()
        run_request(addons, f)
        finish(addons, f, failed)
        freed = weakref.ref(f)
        del f
        assert freed() is None
        gc.collect()
        cyclic = sorted({type(o).__qualname__ for o in garbage})
    assert cyclic == []
    for sink in shared.all_sinks():
        sink.flush()
