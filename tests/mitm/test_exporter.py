"""MetricsExporter: each finished flow observed once through the metrics door; the listen option is checked."""

from __future__ import annotations

import time
import typing

import pytest
from mitmproxy import exceptions, flow as mflow
from mitmproxy.test import taddons, tutils

from privproxy.metrics import Metrics
from privproxy.mitm import flowview
from privproxy.mitm.exporter import MetricsExporter, certificate_expiry, parse_listen
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


def metric(shared: SharedState, name: str, **labels: str) -> float | None:
    return shared.metrics.registry.get_sample_value(name, labels)


def test_requests_in_flight_until_answered_or_failed(chain):
    _, addons, shared = chain
    exporter = next(a for a in addons if isinstance(a, MetricsExporter))
    f, g = make_flow("/a"), make_flow("/b")
    exporter.requestheaders(f)
    exporter.requestheaders(g)
    exporter.requestheaders(g)  # a hook seen twice counts once
    assert metric(shared, "privproxy_requests_in_flight") == 2
    f.response = tutils.tresp()
    exporter.response(f)
    exporter.response(f)
    g.error = mflow.Error("client disconnected")
    exporter.error(g)
    assert metric(shared, "privproxy_requests_in_flight") == 0


def test_the_origin_is_timed_from_the_request_sent_to_its_response_headers(chain, monkeypatch):
    _, addons, shared = chain
    by_name = {type(a).__name__: a for a in addons}
    pf, exporter = by_name["PrivacyFilter"], by_name["MetricsExporter"]
    clock = [1000.0]
    monkeypatch.setattr("privproxy.mitm.exporter.time.time", lambda: clock[0])
    f = make_flow("/page")
    pf.requestheaders(f)
    exporter.request(f)
    clock[0] += 0.3
    f.response = tutils.tresp()
    exporter.responseheaders(f)
    exporter.responseheaders(f)  # once per flow
    assert metric(shared, "privproxy_upstream_latency_seconds_count", source="origin") == 1
    assert metric(shared, "privproxy_upstream_latency_seconds_sum", source="origin") == pytest.approx(0.3)
    own = make_flow("/p", tls=False)  # plain HTTP: privproxy answers the redirect itself, the origin is not asked
    pf.requestheaders(own)
    exporter.request(own)
    exporter.responseheaders(own)
    assert metric(shared, "privproxy_upstream_latency_seconds_count", source="origin") == 1


def test_the_buckets_follow_the_upstream_timeout_option():
    shared = SharedState(Metrics())
    exporter = MetricsExporter(shared)
    with taddons.context(exporter) as tctx:
        tctx.options.add_option("privproxy_upstream_timeout", float, 60.0, "")
        tctx.configure(exporter, privproxy_upstream_timeout=7.5)
    assert shared.metrics.upstream_latency.metric._upper_bounds[-2:] == [7.5, float("inf")]


def test_certificate_expiry_of_mitmproxys_certs_option(tmp_path):
    from tests.certs import Authority

    ca = Authority()
    www, api = tmp_path / "www.pem", tmp_path / "api.pem"
    ca.issue("www.example.test", "example.test", days=10).write(www)
    ca.issue("api.example.test", days=40).write(api)
    shared = SharedState(Metrics())
    exporter = MetricsExporter(shared)
    with taddons.context(exporter) as tctx:
        tctx.options.add_option("certs", typing.Sequence[str], [], "")  # mitmdump --certs, served by tlsconfig
        tctx.configure(exporter, certs=[str(www), f"api.example.test={api}", str(tmp_path / "gone.pem")])
        days = {n: (metric(shared, "privproxy_certificate_expiry_timestamp_seconds", certificate=n) - time.time())
                / 86400 for n in ("www.example.test", "api.example.test")}
        assert 9.9 < days["www.example.test"] < 10.1 and 39.9 < days["api.example.test"] < 40.1
        tctx.configure(exporter, certs=[str(www)])  # no longer served: its series goes
    assert metric(shared, "privproxy_certificate_expiry_timestamp_seconds", certificate="api.example.test") is None
    assert metric(shared, "privproxy_certificate_expiry_timestamp_seconds", certificate="www.example.test")


def test_a_certificate_without_dns_names_is_named_by_its_file(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3)).sign(key, hashes.SHA256()))
    path = tmp_path / "edge.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    name, not_after = certificate_expiry(path)
    assert name == "edge.pem" and not_after == pytest.approx(cert.not_valid_after_utc.timestamp())
