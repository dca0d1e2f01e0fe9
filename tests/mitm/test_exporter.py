"""MetricsExporter: each finished flow observed once through the metrics door; the listen option is checked."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions, flow as mflow
from mitmproxy.test import taddons, tutils

from privproxy.metrics import Metrics
from privproxy.mitm import flowview
from privproxy.mitm.exporter import MetricsExporter, parse_listen
from privproxy.mitm.shared import SharedState
from tests.mitm.conftest import make_flow


@pytest.mark.parametrize("value, expected", [
    ("9464", ("127.0.0.1", 9464)), (":9464", ("127.0.0.1", 9464)), ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:9464", ("::1", 9464)),
])
def test_parse_listen(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["", "host", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1"])
def test_parse_listen_refuses(value):
    with pytest.raises(ValueError):
        parse_listen(value)


def test_a_bad_listen_option_is_an_options_error():
    exporter = MetricsExporter(SharedState(Metrics()))
    with taddons.context(exporter) as tctx:
        tctx.options.add_option("privproxy_metrics", str, "", "")
        with pytest.raises(exceptions.OptionsError, match="privproxy_metrics"):
            tctx.configure(exporter, privproxy_metrics="nope")


def requests_total(shared: SharedState, outcome: str) -> float | None:
    return shared.metrics.registry.get_sample_value(
        "privproxy_requests_total", {"site": "default", "scheme": "https", "outcome": outcome})


def test_each_flow_is_observed_once_and_unclassified_ones_not_at_all(chain):
    _, addons, shared = chain
    by_name = {type(a).__name__: a for a in addons}
    pf, log, exporter = by_name["PrivacyFilter"], by_name["AccessLog"], by_name["MetricsExporter"]
    f = make_flow("/p")
    pf.requestheaders(f)
    f.response = tutils.tresp()
    log.response(f)
    exporter.response(f)
    f.error = mflow.Error("killed")
    exporter.error(f)  # answered already: not observed again
    exporter.response(f)
    assert requests_total(shared, "forwarded") == 1 and flowview.context(f).observed
    g = make_flow("/")  # never classified (no PrivacyFilter): nothing to count it by
    exporter.error(g)
    assert flowview.context(g).observed
    assert shared.metrics.registry.get_sample_value("privproxy_filter_duration_seconds_count") == 1


def test_readiness_follows_serving_and_the_rules():
    shared = SharedState(Metrics())
    exporter = MetricsExporter(shared)
    assert exporter.ready() == (False, "not serving (starting or shutting down)")
    exporter.serving = True
    assert exporter.ready() == (False, "no rules loaded")
    assert exporter.live() == (True, "ok")
