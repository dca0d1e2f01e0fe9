"""Metrics: the observe door adapters count through, series pre-initialised from the enums, and names and labels
that dashboards, alert rules and e2e tests rely on (C15: label values from fixed sets or the configuration)."""

from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from privproxy import pipeline, policy
from privproxy.beacon import Result as BeaconResult
from privproxy.metrics import Metrics
from privproxy.outcome import BeaconConsent, ConsentState, LogStream, Outcome, Result, Stage
from privproxy.pipeline import RequestView
from tests.helpers import REPO

# metric family -> label names, as dashboards/ and dashboards/alerts read them
SHAPE = {
    "privproxy_requests": ("site", "scheme", "outcome"),
    "privproxy_https_redirects": ("site",),
    "privproxy_ip_truncations": ("family",),
    "privproxy_forwarding_headers_ignored": ("reason",),
    "privproxy_fields_scrubbed": ("scope", "action", "rule", "mode", "vendor"),
    "privproxy_scrub_failures": ("stage",),
    "privproxy_log_records": ("stream",),
    "privproxy_log_write_errors": ("stream", "reason"),
    "privproxy_config_reloads": ("result",),
    "privproxy_config_last_reload_success_timestamp_seconds": (),
    "privproxy_config": (),
    "privproxy_request_duration_seconds": ("site",),
    "privproxy_filter_duration_seconds": (),
    "privproxy_geo_lookups": ("result",),
    "privproxy_requests_by_country": ("country",),
    "privproxy_beacons": ("vendor", "consent"),
    "privproxy_beacon_failures": ("vendor", "reason"),
    "privproxy_beacon_fields_unclassified": ("vendor",),
    "privproxy_consent_decisions": ("state",),
    "privproxy_proxy_protocol_connections": ("result",),
    "privproxy_geo_database_loads": ("result",),
    "privproxy_requests_refused": ("reason",),
    "privproxy_protection_disabled": ("protection",),
    "privproxy_build": (),
}


@pytest.fixture(scope="module")
def rules() -> policy.Policy:
    return policy.default()


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def view(path: str = "/p?q=1", tls: bool = True, headers: tuple[tuple[str, str], ...] = ()) -> RequestView:
    fields = (("Host", "shop.example"), *headers)
    index: dict[str, list[str]] = {}
    for k, v in fields:
        index.setdefault(k.lower(), []).append(v)
    return RequestView(peer="127.9.8.7", tls=tls, method="GET", host="shop.example", path=path,
                       get_all=lambda n: index.get(n, []), fields=fields)


def test_names_and_label_names_do_not_change():
    m = Metrics()
    assert {fam.name for fam in m.registry.collect()} == set(SHAPE)
    metrics = [getattr(v, "metric", v) for v in vars(m).values()]
    shape = {x._name: tuple(x._labelnames) for x in metrics if hasattr(x, "_labelnames")}
    assert shape == {k: v for k, v in SHAPE.items() if k != "privproxy_build"}


def test_preinit_zeroes_every_member_of_the_enums(rules):
    m = Metrics()
    m.policy_loaded(rules, 1.0)
    for outcome in Outcome:
        for scheme in ("http", "https"):
            assert value(m, "privproxy_requests_total", site="default", scheme=scheme, outcome=outcome) == 0
    for stage in Stage:
        assert value(m, "privproxy_scrub_failures_total", stage=stage) == 0
    for state in ConsentState:
        assert value(m, "privproxy_consent_decisions_total", state=state) == 0
    for consent in BeaconConsent:
        assert value(m, "privproxy_beacons_total", vendor="ga4", consent=consent) == 0
    for stream in LogStream:
        assert value(m, "privproxy_log_records_total", stream=stream) == 0
    for result in Result:
        assert value(m, "privproxy_config_reloads_total", result=result) == 0
        assert value(m, "privproxy_geo_database_loads_total", result=result) == 0
    assert value(m, "privproxy_config_last_reload_success_timestamp_seconds") == 1.0
    assert value(m, "privproxy_config_info", sha256=rules.sha256, path_hash=rules.sha256[:12]) == 1


def test_observe_counts_one_finished_flow(rules):
    m = Metrics()
    v = view("/p?email=jane%40example.com")
    state = pipeline.begin(v, rules)
    record = pipeline.log_record(state, v, 200, 10, Outcome.FORWARDED, state.started + 0.25)
    state.failures.append((Stage.LOG_REFERRER, "ValueError"))
    m.observe(state, record)
    assert value(m, "privproxy_requests_total", site="default", scheme="https", outcome="forwarded") == 1
    assert value(m, "privproxy_request_duration_seconds_count", site="default") == 1
    assert value(m, "privproxy_requests_by_country_total", country="unknown") == 1
    assert value(m, "privproxy_geo_lookups_total", result="disabled") == 1
    assert value(m, "privproxy_consent_decisions_total", state="none") == 1
    assert value(m, "privproxy_scrub_failures_total", stage="log_referrer") == 1
    assert value(m, "privproxy_filter_duration_seconds_count") == 1
    scrubbed = [s for fam in m.registry.collect() if fam.name == "privproxy_fields_scrubbed" for s in fam.samples]
    assert scrubbed and all(s.labels["vendor"] == "none" and s.labels["mode"] in ("enforce", "report_only")
                            for s in scrubbed)
    m.observe(state, None)  # no record (nothing was logged): the request is not counted twice
    assert value(m, "privproxy_requests_total", site="default", scheme="https", outcome="forwarded") == 1


def test_the_door_methods_count_their_series(rules):
    m = Metrics()
    client = pipeline.begin(view(headers=(("X-Forwarded-For", "203.0.113.9"),)), rules).client
    m.client(client)
    m.redirected("default")
    m.refused("bad_host")
    m.beacon(BeaconResult("ga4", True, "", b"", unclassified=3, field_errors=["bad_json"]), consent=False)
    m.beacon_refused("ga4", "")
    m.failure(Stage.HTTPS_HEADERS)
    m.log_written(LogStream.LINKED)
    m.log_error(LogStream.ACCESS, "disk_full")
    m.reload(Result.FAILURE)
    m.geo_load(Result.SUCCESS)
    m.proxy_connection("accepted")
    assert value(m, "privproxy_ip_truncations_total", family="ipv4") == 1
    assert value(m, "privproxy_forwarding_headers_ignored_total", reason="untrusted_peer") == 1
    assert value(m, "privproxy_https_redirects_total", site="default") == 1
    assert value(m, "privproxy_requests_refused_total", reason="bad_host") == 1
    assert value(m, "privproxy_beacons_total", vendor="ga4", consent="none") == 1
    assert value(m, "privproxy_beacon_fields_unclassified_total", vendor="ga4") == 3
    assert value(m, "privproxy_beacon_failures_total", vendor="ga4", reason="bad_json") == 1
    assert value(m, "privproxy_beacon_failures_total", vendor="ga4", reason="unknown") == 1
    assert value(m, "privproxy_scrub_failures_total", stage="https_headers") == 1
    assert value(m, "privproxy_log_records_total", stream="linked") == 1
    assert value(m, "privproxy_log_write_errors_total", stream="access", reason="disk_full") == 1
    assert value(m, "privproxy_config_reloads_total", result="failure") == 1
    assert value(m, "privproxy_geo_database_loads_total", result="success") == 1
    assert value(m, "privproxy_proxy_protocol_connections_total", result="accepted") == 1
    assert "Outcome." not in generate_latest(m.registry).decode()  # values, never enum reprs


def test_adapters_count_only_through_the_door():
    """Counting stays in one place: no `.labels(` outside metrics.py."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "addons" / "privproxy").rglob("*.py")
                 if p.name != "metrics.py" and re.search(r"\.labels\(", p.read_text())]
    assert offenders == []
