"""flowview: the one FlowContext per flow under one metadata key, and the only module of privproxy's addons that
reads or writes a flow's fields."""

from __future__ import annotations

import re
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.test import tutils

from privproxy.mitm import flowview
from privproxy.mitm.drain import Drain
from privproxy.outcome import Outcome
from privproxy.pipeline import forward_fields
from privproxy.sites import parse_upstream
from tests.helpers import REPO
from tests.mitm.conftest import make_flow

MITM = REPO / "addons" / "privproxy" / "mitm"


def test_one_context_made_on_first_use():
    f = make_flow("/")
    assert flowview.peek(f) is None and flowview.state_of(f) is None
    assert flowview.error_answer(f) is None and flowview.outcome_of(f) is None
    c = flowview.context(f)
    assert flowview.context(f) is c and flowview.peek(f) is c and list(f.metadata) == [flowview.KEY]


def test_a_flow_through_every_hook_keeps_one_metadata_key(chain):
    _, addons, _ = chain
    drain = Drain()
    f = make_flow("/p?email=jane%40example.com", headers=[("Cookie", "_ga=GA1.1.1.2")])
    for hook in ("requestheaders", "request"):
        for a in (drain, *addons):
            if hasattr(a, hook):
                getattr(a, hook)(f)
    f.response = tutils.tresp(content=b"x" * 10)
    for hook in ("responseheaders", "response"):
        for a in (drain, *addons):
            if hasattr(a, hook):
                getattr(a, hook)(f)
    c = flowview.peek(f)
    assert list(f.metadata) == [flowview.KEY]
    assert c.state is not None and c.view is not None and c.record is not None
    assert c.logged and c.observed and not c.inflight and drain.inflight == 0
    assert c.record.outcome == Outcome.FORWARDED and c.record.bytes == 10


def test_answer_here_sets_the_response_and_the_outcome():
    f = make_flow("/")
    f.request.stream = True
    flowview.answer_here(f, Outcome.NOT_FORWARDED, 204, b"", {"cache-control": "no-store"})
    assert flowview.answered(f) and f.response.status_code == 204 and f.request.stream is False
    assert f.response.headers["cache-control"] == "no-store" and flowview.outcome_of(f) == "not_forwarded"


def test_small_answers_are_buffered_and_large_or_unsized_ones_counted_as_they_stream():
    small = make_flow("/")
    small.response = tutils.tresp(content=b"abc")
    flowview.count_response(small, buffer_limit=100)
    assert not small.response.stream and flowview.streamed_bytes(small) is None
    assert flowview.response_size(small) == 3
    big = make_flow("/")
    big.response = tutils.tresp(content=b"")
    big.response.headers["content-length"] = "1000"
    flowview.count_response(big, buffer_limit=100)
    for chunk in (b"a" * 600, b"b" * 400):
        assert big.response.stream(chunk) == chunk
    assert flowview.streamed_bytes(big) == flowview.response_size(big) == 1000


def test_an_unsized_answer_with_a_body_still_streams():
    f = make_flow("/")
    f.response = tutils.tresp(status_code=200, content=b"")
    del f.response.headers["content-length"]
    flowview.count_response(f, buffer_limit=100)
    assert f.response.stream and f.response.stream(b"abc") == b"abc" and flowview.streamed_bytes(f) == 3


def test_secure_response_replaces_hsts_and_keeps_bytes_it_does_not_own():
    f = make_flow("/")
    f.response = tutils.tresp(headers=http.Headers([
        (b"Strict-Transport-Security", b"max-age=0"), (b"Set-Cookie", b"sid=\xff1; HttpOnly"), (b"X-A", b"1")]))
    flowview.secure_response(f, "max-age=63072000", lambda v: v + "; Secure")
    assert f.response.headers.fields == ((b"Set-Cookie", b"sid=\xff1; HttpOnly; Secure"), (b"X-A", b"1"),
                                         (b"Strict-Transport-Security", b"max-age=63072000"))


def test_strip_identifying_headers_is_the_fail_closed_fallback():
    f = make_flow("/", headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "203.0.113.9"),
                                ("Cookie", "sid=1"), ("Accept", "*/*")])
    flowview.strip_identifying_headers(f)
    assert [k for k, _ in f.request.headers.items()] == ["host", "Accept"]


def test_flowview_is_the_only_addon_module_touching_flow_fields_or_metadata():
    """internals is mitmproxy's HTTP layer itself (it builds and ends flows as that layer does); flowfile reads
    recorded flows from a dump file (explain --flows, tune), never a flow the proxy is handling."""
    touches = re.compile(r"\bflow\.(metadata|response|request|error|live)\b|\.metadata\b")
    offenders = [p.name for p in MITM.glob("*.py")
                 if p.name not in ("flowview.py", "internals.py", "flowfile.py") and touches.search(p.read_text())]
    assert offenders == []


_NAMES = st.sampled_from([b"content-length", b"Content-Length", b"CONTENT-LENGTH", b"transfer-encoding",
                          b"Strict-Transport-Security", b"x", b"content-length2", b"content_length"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, st.binary(max_size=6)), max_size=6),
       st.sampled_from([b"content-length", b"transfer-encoding", b"strict-transport-security", b"x"]))
def test_field_value_is_mitmproxys_get(fields, name):
    # One pass over the fields instead of mitmproxy's lookup: repeated fields joined, bytes that are no UTF-8
    # kept as surrogate escapes, exactly as Headers.get gives them (a second Content-Length must still show).
    headers = http.Headers(fields)
    assert flowview.field_value(headers, name) == headers.get(name.decode())


_HOST_NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"x-host", b"hostname", b"Set-Cookie", b"set-cookie"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_HOST_NAMES, st.binary(max_size=6)), max_size=6),
       st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/3"]), st.sampled_from(["", "example.com:8443"]))
def test_host_header_and_set_cookies_are_mitmproxys(fields, version, authority):
    # The Host (HTTP/2's and 3's :authority first) and the Set-Cookie values in one pass over the fields, as
    # mitmproxy's own properties give them: repeated fields joined, no UTF-8 kept as surrogate escapes.
    req = tutils.treq(http_version=version.encode(), authority=authority.encode())
    req.headers = http.Headers(fields)
    as_text = [(k.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for k, v in fields]
    assert flowview.host_header(req, as_text) == req.host_header
    f = make_flow("/")
    f.request = req
    v = flowview.view(f)
    assert v.host == (req.host_header or "") and v.fields == tuple(as_text)
    for name in ("host", "set-cookie", "x-host"):
        assert v.get_all(name) == [value for k, value in as_text if k.lower() == name]
        assert v.first(name) == next((value for k, value in as_text if k.lower() == name), None)
    f.response = tutils.tresp(headers=http.Headers(fields))
    assert flowview.set_cookies(f) == f.response.headers.get_all("set-cookie")


def _apply_with_mitmproxys_lookups(req: http.Request, state, view) -> None:
    """flowview.apply as written with mitmproxy's own Host lookups (req.host_header before and after the rewrite)."""
    flowview.set_fields(req.headers, forward_fields(state, view.fields))
    if state.forward_target is not None:
        req.path = state.forward_target
    if req.authority and req.http_version.startswith("HTTP/1"):
        req.authority = ""
    host = state.host or req.host_header
    upstream = state.site.upstream
    if upstream is not None:
        req.scheme, req.host, req.port = upstream.scheme, upstream.host, upstream.port
    if host and (upstream is not None or host != req.host_header):
        req.host_header = host


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/3"]),
       st.sampled_from(["", "example.com:8443", "a.example"]),
       st.lists(st.tuples(st.sampled_from([b"Host", b"host", b"HOST", b"X-Host", b"Accept"]),
                          st.sampled_from([b"a.example", b"b.example", b"", b"\xc3\xa9.example", b"\xff"])),
                max_size=3),
       st.sampled_from(["", "a.example", "other.example"]),
       st.sampled_from([None, "http://10.0.0.5:8080", "https://up.example"]), st.sampled_from([None, "/x?y=1"]))
def test_apply_sets_the_request_head_as_mitmproxys_own_lookups_would(version, authority, fields, host, upstream,
                                                                       target):
    # apply() reads the Host it forwards from the fields it built, not through mitmproxy's lookups: the same head.
    reqs = []
    for _ in range(2):
        r = tutils.treq(http_version=version.encode(), authority=authority.encode())
        r.headers = http.Headers(fields)
        reqs.append(r)
    view = flowview.view(SimpleNamespace(request=reqs[0], client_conn=SimpleNamespace(
        peername=("198.51.100.7", 1), tls_established=True, tls_version="TLSv1.3")))
    state = SimpleNamespace(forward_target=target, host=host, strip_headers=frozenset(), drop_headers=(), cookie=None,
                            site=SimpleNamespace(upstream=parse_upstream(upstream) if upstream else None),
                            set_headers={"x-forwarded-for": "198.51.100.0"})
    _apply_with_mitmproxys_lookups(reqs[0], state, view)
    flowview.apply(SimpleNamespace(request=reqs[1]), state, view)
    want, got = reqs
    assert (got.headers.fields, got.authority, got.host, got.port, got.scheme, got.path) == \
        (want.headers.fields, want.authority, want.host, want.port, want.scheme, want.path)
