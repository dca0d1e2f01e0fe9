"""AccessLog's record for flows that end in the `error` hook: each gets the status the visitor got, and a refusal
made before classification is classified for its record (truncated client, `-` for what is unknown)."""

from __future__ import annotations

from mitmproxy import flow as mflow, http

from privproxy.mitm import flowview
from privproxy.outcome import Outcome
from tests.mitm.conftest import make_flow


def components(addons):
    by_name = {type(a).__name__: a for a in addons}
    return by_name["PrivacyFilter"], by_name["AccessLog"], by_name["MetricsExporter"]


def test_a_head_refused_by_the_http_layer_is_recorded_with_its_status(chain):
    tctx, addons, shared = chain
    _, log, exporter = components(addons)
    f = make_flow("/x")
    f.request = http.Request("", 0, b"-", b"", b"", b"-", b"HTTP/1.1", (), None, None, 0.0, None)
    f.error = mflow.Error("request head too large")
    flowview.context(f).answer = flowview.ErrorAnswer(431, "head_too_large")
    log.error(f)
    exporter.error(f)
    record = flowview.context(f).record
    assert (record.status, record.outcome, record.method, record.path) == (431, "head_too_large", "-", "-")
    assert record.client == "127.9.8.0"
    assert shared.metrics.registry.get_sample_value(
        "privproxy_requests_total", {"site": "default", "scheme": "https", "outcome": "head_too_large"}) == 1


def test_a_classified_flow_keeps_its_record_fields_and_gets_the_error_answer(chain):
    _, addons, _ = chain
    pf, log, _ = components(addons)
    f = make_flow("/account?email=jane%40example.com")
    pf.requestheaders(f)
    f.error = mflow.Error("Client disconnected.")
    flowview.context(f).answer = flowview.ErrorAnswer(499, "client_closed")
    log.error(f)
    record = flowview.context(f).record
    assert (record.status, record.outcome) == (499, "client_closed") and "jane" not in record.path
    log.error(f)  # one record per flow, whatever calls follow


def test_an_origin_error_keeps_the_timeout_outcome_and_an_unknown_cause_is_a_502(chain):
    _, addons, _ = chain
    pf, log, _ = components(addons)
    f = make_flow("/slow")
    pf.requestheaders(f)
    flowview.set_outcome(f, Outcome.UPSTREAM_TIMEOUT)
    flowview.context(f).answer = flowview.ErrorAnswer(502, "upstream_error")
    log.error(f)
    assert flowview.context(f).record.outcome == "upstream_timeout"
    g = make_flow("/other")
    pf.requestheaders(g)
    g.error = mflow.Error("killed")
    log.error(g)
    assert (flowview.context(g).record.status, flowview.context(g).record.outcome) == (502, "upstream_error")
    assert flowview.state_of(g) is not None
