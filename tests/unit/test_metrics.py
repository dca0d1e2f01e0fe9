"""Metrics: the observe door adapters count through, series pre-initialised from the enums, and names and labels
that dashboards, alert rules and e2e tests rely on (C15: label values from fixed sets or the configuration)."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import generate_latest

from privproxy import metrics, pipeline, policy
from privproxy.beacon import Result as BeaconResult
from privproxy.metrics import Metrics, Tally
from privproxy.outcome import BeaconConsent, ConsentState, LogStream, Outcome, Result, Source, Stage
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
    "privproxy_certificate_reloads": ("result",),
    "privproxy_requests_refused": ("reason",),
    "privproxy_protection_disabled": ("protection",),
    "privproxy_responses": ("source", "class"),
    "privproxy_requests_in_flight": (),
    "privproxy_certificate_expiry_timestamp_seconds": ("certificate",),
    "privproxy_acme_orders": ("result",),
    "privproxy_acme_consecutive_failures": ("certificate",),
    "privproxy_pseudonym_key_mode": ("mode",),
    "privproxy_upstream_latency_seconds": ("source",),
    "privproxy_vendor_forwards": ("vendor", "class"),
    "privproxy_vendor_failures": ("vendor", "reason"),
    "privproxy_vendor_latency_seconds": ("vendor",),
    "privproxy_vendor_scripts": ("script", "result"),
    "privproxy_vendor_opt_outs": ("vendor", "signal"),
    "privproxy_build": (),
}
# prometheus_client's ProcessCollector on the same registry (Linux): the standard process_* series
PROCESS = {"process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
           "process_cpu_seconds", "process_open_fds", "process_max_fds"}


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
    assert {fam.name for fam in m.registry.collect()} == set(SHAPE) | PROCESS
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
        assert value(m, "privproxy_certificate_reloads_total", result=result) == 0
    assert value(m, "privproxy_config_last_reload_success_timestamp_seconds") == 1.0
    assert value(m, "privproxy_config_info", sha256=rules.sha256) == 1
    for source in Source:
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            assert value(m, "privproxy_responses_total", source=source, **{"class": cls}) == 0
    assert value(m, "privproxy_upstream_latency_seconds_count", source="origin") == 0
    assert value(m, "privproxy_upstream_latency_seconds_count", source="vendor") == 0
    assert value(m, "privproxy_requests_in_flight") == 0


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


@pytest.mark.parametrize("worker", [False, True])
def test_observe_counts_as_many_as_one_increment_per_change(rules, monkeypatch, worker):
    # A finished flow's increments go in one call (Tally.extend): the same totals as one increment per change,
    # in the proxy (deferred, applied at a collection or when BATCH are pending) and in a worker (at once).
    monkeypatch.setattr(metrics, "in_worker", lambda: worker)
    m = Metrics()
    v = view("/p?email=jane%40example.com&uid=member-4711")
    state = pipeline.begin(v, rules)
    record = pipeline.log_record(state, v, 200, 10, Outcome.FORWARDED, state.started + 0.25)
    assert state.changes
    n = Tally.BATCH // 4 + 3  # more pending than BATCH on the way: applied on the spot, none lost or doubled
    for _ in range(n):
        m.observe(state, record)
        assert len(m.tally.pending) <= Tally.BATCH + 32
    assert not worker or not m.tally.pending
    for c in {(c.scope, c.action, c.rule, c.report_only) for c in state.changes}:
        per_flow = sum(1 for d in state.changes if (d.scope, d.action, d.rule, d.report_only) == c)
        mode = "report_only" if c[3] else "enforce"
        assert value(m, "privproxy_fields_scrubbed_total", scope=c[0], action=c[1], rule=c[2], mode=mode,
                     vendor="none") == n * per_flow
    assert value(m, "privproxy_requests_total", site="default", scheme="https", outcome="forwarded") == n


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


# --- The edge: answers by source, the origin's latency, requests in flight, certificates, keys -------------------

def responses(m: Metrics, source: str, cls: str) -> float | None:
    return value(m, "privproxy_responses_total", source=source, **{"class": cls})


@pytest.mark.parametrize("outcome, beacon, status, source, cls", [
    (Outcome.FORWARDED, False, 200, "origin", "2xx"),
    (Outcome.FORWARDED, False, 503, "origin", "5xx"),
    (Outcome.FORWARDED, True, 204, "vendor", "2xx"),
    (Outcome.REDIRECTED, False, 308, "proxy", "3xx"),
    (Outcome.BAD_REQUEST, False, 400, "proxy", "4xx"),
    (Outcome.NOT_FORWARDED, True, 204, "proxy", "2xx"),
    (Outcome.UPSTREAM_ERROR, False, 502, "proxy", "5xx"),
    (Outcome.UPSTREAM_TIMEOUT, False, 504, "proxy", "5xx"),
    (Outcome.CLIENT_CLOSED, False, 200, "origin", "2xx"),  # the origin's answer had begun
    (Outcome.CLIENT_CLOSED, False, 499, None, None),  # nobody answered: not an answer
])
def test_answers_are_counted_by_who_made_them(rules, outcome, beacon, status, source, cls):
    m = Metrics()
    v = view("/p")
    state = pipeline.begin(v, rules)
    if beacon:
        from privproxy.vendors import VENDORS
        state.codec = VENDORS["ga4"]  # the request was for a beacon collection path
    m.observe(state, pipeline.log_record(state, v, status, 0, outcome, state.started + 0.1))
    counted = {(s.labels["source"], s.labels["class"]) for fam in m.registry.collect()
               if fam.name == "privproxy_responses" for s in fam.samples if s.value}
    assert counted == ({(source, cls)} if source else set())


def test_upstream_latency_buckets_end_at_the_upstream_timeout():
    m = Metrics()
    assert m.upstream_latency.metric._upper_bounds[-2] == 60.0  # the default timeout, then +Inf
    m.upstream_latency_observed(Source.ORIGIN, 0.3)
    m.upstream_timeout(5)
    assert m.upstream_latency.metric._upper_bounds == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                                       float("inf")]
    assert value(m, "privproxy_upstream_latency_seconds_count", source="origin") == 0  # started anew
    m.upstream_latency_observed(Source.VENDOR, 5.02)  # the timeout's own 504: past the last finite bucket
    m.upstream_latency_observed(Source.ORIGIN, -1)  # a clock step back counts as 0
    assert value(m, "privproxy_upstream_latency_seconds_bucket", source="vendor", le="5.0") == 0
    assert value(m, "privproxy_upstream_latency_seconds_count", source="vendor") == 1
    assert value(m, "privproxy_upstream_latency_seconds_bucket", source="origin", le="0.005") == 1
    m.upstream_timeout(0)  # no limit: buckets up to five minutes
    assert m.upstream_latency.metric._upper_bounds[-2] == 300.0
    assert "privproxy_upstream_latency_seconds" in generate_latest(m.registry).decode()


def test_requests_in_flight_and_certificates():
    m = Metrics()
    m.request_started()
    m.request_started()
    m.request_ended()
    assert value(m, "privproxy_requests_in_flight") == 1
    m.certificate("www.example.com", 1_900_000_000.0)
    m.certificate("api.example.com", 1_800_000_000.0)
    m.certificate_removed("api.example.com")
    m.certificate_removed("never.example.com")  # unknown: nothing to do
    assert value(m, "privproxy_certificate_expiry_timestamp_seconds", certificate="www.example.com") == 1.9e9
    assert value(m, "privproxy_certificate_expiry_timestamp_seconds", certificate="api.example.com") is None


def test_the_pseudonym_key_mode_is_read_at_each_scrape(rules, tmp_path):
    from privproxy import pseudonyms

    m = Metrics()
    for mode in ("key_file", "secret", "ephemeral"):
        assert value(m, "privproxy_pseudonym_key_mode", mode=mode) == 0
    now = [1_800_000_000.0]
    pz = pseudonyms.Pseudonymizer(pseudonyms.Settings(key_file=str(tmp_path / "keys.json")), clock=lambda: now[0])
    m.pseudonym_keys(pz)
    assert value(m, "privproxy_pseudonym_key_mode", mode="ephemeral") == 1  # the file is not there yet
    pseudonyms.write_key_file(tmp_path / "keys.json", pseudonyms.KeyFile(pz.period(), bytes(32)))
    now[0] += 2
    pz.key()  # the proxy's next pseudonym reads the file
    assert value(m, "privproxy_pseudonym_key_mode", mode="key_file") == 1
    assert value(m, "privproxy_pseudonym_key_mode", mode="ephemeral") == 0
    m.policy_loaded(rules, 2.0)  # the tests' PRIVPROXY_SECRET, or none: either is shown
    mode = rules.scrubber.pseudonymizer
    assert value(m, "privproxy_pseudonym_key_mode", mode="ephemeral" if mode.ephemeral else mode.mode) == 1


def test_the_standard_process_metrics_are_on_the_injected_registry():
    text = generate_latest(Metrics().registry).decode()
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" not in generate_latest(Metrics().registry.__class__()).decode()


def test_every_metric_is_in_the_readme_with_its_labels():
    """The README's Metrics table names every family as Prometheus shows it (counters with _total, infos with
    _info) and each of its label names."""
    readme = REPO.joinpath("README.md").read_text()
    table = readme[readme.index("\n## Metrics"):readme.index("### Dashboards and alerts")]
    for fam in Metrics().registry.collect():
        shown = fam.name + {"counter": "_total", "info": "_info"}.get(fam.type, "")
        assert f"`{shown}`" in table, shown
        row = next(line for line in table.splitlines() if f"`{shown}`" in line)
        labels = {k for s in fam.samples for k in s.labels if k not in ("le", "version", "sha256")}
        assert all(f"`{k}`" in row for k in labels), (shown, labels)


def test_request_path_increments_are_applied_before_every_collection():
    # Counters of the request path are applied in batches (metrics.Tally): a scrape, or any read of the registry,
    # still sees every increment made before it, and the pending ones stay bounded without any scrape.
    m = Metrics()
    for _ in range(3):
        m.log_written(LogStream.ACCESS)
        m.request_started()
    m.request_ended()
    assert m.registry.get_sample_value("privproxy_log_records_total", {"stream": "access"}) == 3
    assert m.registry.get_sample_value("privproxy_requests_in_flight") == 2
    assert b'privproxy_log_records_total{stream="access"} 3.0' in generate_latest(m.registry)
    for _ in range(3 * Tally.BATCH):
        m.log_written(LogStream.LINKED)
        assert len(m.tally.pending) <= Tally.BATCH + 1
    assert m.registry.get_sample_value("privproxy_log_records_total", {"stream": "linked"}) == 3 * Tally.BATCH


def test_a_scrape_of_some_names_sees_their_increments_too():
    # Prometheus may ask for some series only (/metrics?name[]=...): prometheus_client then collects only the
    # metrics of those names, and each of them applies what is pending first.
    m = Metrics()
    for _ in range(3):
        m.log_written(LogStream.ACCESS)
        m.request_started()
    some = m.registry.restricted_registry(["privproxy_log_records_total", "privproxy_requests_in_flight"])
    text = generate_latest(some).decode()
    assert 'privproxy_log_records_total{stream="access"} 3.0' in text
    assert "privproxy_requests_in_flight 3.0" in text


def test_a_reader_waits_for_a_batch_another_thread_is_applying():
    # Two threads may apply at once (the event loop when the queue is full, a scrape): the reader must not see
    # the increments the other one has taken but not yet applied (an in-flight gauge below zero).
    m = Metrics()
    m.request_started()
    m.request_ended()
    m.request_started()
    m.tally._applying.acquire()  # another thread is applying
    got: list[float | None] = []
    reader = threading.Thread(target=lambda: got.append(m.registry.get_sample_value("privproxy_requests_in_flight")))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not got  # waits rather than reading half a batch
    m.tally._applying.release()
    reader.join(5)
    assert got == [1.0]


def test_increments_made_while_another_thread_scrapes_are_counted_once():
    m = Metrics()
    n = 60_000
    done = threading.Event()
    seen: list[float] = []

    def scrape() -> None:
        while not done.is_set():
            seen.append(m.registry.get_sample_value("privproxy_log_records_total", {"stream": "access"}) or 0.0)

    t = threading.Thread(target=scrape)
    t.start()
    try:
        for _ in range(n):
            m.log_written(LogStream.ACCESS)
    finally:
        done.set()
        t.join()
    assert seen == sorted(seen), "a counter went backwards"
    assert m.registry.get_sample_value("privproxy_log_records_total", {"stream": "access"}) == n


def test_a_worker_increments_at_once(monkeypatch):
    # A worker's values go to multiprocess files the supervisor reads: nothing may wait for a collection there.
    monkeypatch.setattr(metrics, "in_worker", lambda: True)
    m = Metrics()
    m.log_written(LogStream.ACCESS)
    assert not m.tally.pending
    assert m.registry.get_sample_value("privproxy_log_records_total", {"stream": "access"}) == 1
