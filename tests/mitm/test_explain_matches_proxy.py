"""`privproxy explain` says exactly what the running proxy does (issue 18, item 1).

Generated requests of every kind (pages, every vendor's beacons in every spelling and body shape of the leak
guard, cookies, address headers, consent tokens, plain HTTP) go through the real addon chain (one privproxy
composite under mitmproxy's taddons) and through `explain`; what is forwarded (target, header fields in
order, body), what the proxy answers itself and the access-log record must be equal.
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

import privproxy.mitm
from privproxy import explain
from privproxy.access_log import formats
from privproxy.consent import token
from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from tests.helpers import REPO
from tests.mitm.test_leak_guard import request_case

N = int(os.environ.get("PRIVPROXY_EXPLAIN_EXAMPLES", "120"))
KEY = "explain-differential-consent-key-0123456789"
VARYING = ("ts", "request_id", "duration_ms", "instance", "bytes", "status", "tls")  # per request or connection


@st.composite
def requests(draw):
    method, path, headers, body, peer, _, _ = draw(request_case())
    headers = list(headers)
    if draw(st.booleans()):  # a member's consent token, valid or not; GPC sometimes overrides it
        tok = token.mint("member-7", ("analytics", "logs"), int(time.time()) - 5, 3600, "k1", KEY.encode())
        cookie = "privproxy_consent=" + (tok if draw(st.booleans()) else tok[:-3] + "xyz")
        headers = [(k, f"{v}; {cookie}" if k == "cookie" else v) for k, v in headers]
        if draw(st.booleans()):
            headers.append(("sec-gpc", "1"))
    return method, path, headers, body, peer, draw(st.booleans())


def through_proxy(composite, method, path, headers, body, peer, tls):
    hdrs = http.Headers([(b"host", b"shop.example")] + [(k.encode(), v.encode("utf-8", "surrogateescape"))
                                                         for k, v in headers]
                        + ([(b"content-length", str(len(body)).encode())] if body else []))
    f = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(), headers=hdrs, content=body,
                                    host="127.0.0.1", port=8080), resp=False)
    f.client_conn.peername = (peer, 40000)
    f.client_conn.timestamp_tls_setup = 946681201 if tls else None
    f.client_conn.tls_version = "TLSv1.3" if tls else None
    composite.requestheaders(f)
    if f.response is None:
        composite.request(f)
    answered = f.response.status_code if f.response is not None else None
    forwarded = None if f.response is not None else (
        f.request.path,
        [(k.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for k, v in f.request.headers.fields],
        f.request.raw_content or b"")
    if f.response is None:
        f.response = tutils.tresp(status_code=200, content=b"")
    composite.responseheaders(f)
    composite.response(f)
    return answered, forwarded, formats.json_doc(flowview.context(f).record)


def test_explain_equals_the_addon_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", "explain-differential-secret-0123456789")
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", KEY)
    shared = SharedState()
    composite = privproxy.mitm.addon(shared)
    with taddons.context(composite) as tctx:
        tctx.configure(composite, privproxy_config=str(REPO / "filters.yaml"), privproxy_log_dir=str(tmp_path))
        seen = {"answered": 0, "forwarded": 0, "beacons": 0}

        @settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))
        @given(requests())
        def one(case):
            method, path, headers, body, peer, tls = case
            answered, forwarded, record = through_proxy(composite, method, path, headers, body, peer, tls)
            sample = explain.Sample(method, f"{'https' if tls else 'http'}://shop.example{path}",
                                    (("host", "shop.example"), *headers,
                                     *((("content-length", str(len(body))),) if body else ())), body=body)
            ex = explain.explain(shared.policy, sample, client=peer)
            assert (ex.answered.status if ex.answered else None) == answered, path
            if forwarded is None:
                assert ex.forwarded is None
                seen["answered"] += 1
            else:
                target, fields, sent = forwarded
                assert ex.forwarded is not None, path
                assert ex.forwarded.target == target
                assert [(k, v) for k, v in ex.forwarded.headers if k.lower() != "x-request-id"] == \
                    [(k, v) for k, v in fields if k.lower() != "x-request-id"], path
                assert ex.forwarded.body == sent
                seen["forwarded"] += 1
                seen["beacons"] += ex.vendor != ""
            ours = formats.json_doc(ex.record)
            for key in VARYING:
                ours.pop(key, None)
                record.pop(key, None)
            assert ours == record, path

        one()
    assert all(seen.values()), seen  # the search reached answers, forwarded pages and forwarded beacons
