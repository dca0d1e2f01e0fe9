"""Every privproxy_* metric, on an injected registry, and the one door the adapters count through (Metrics.observe
and the methods beside it). Label values come from the enums of privproxy.outcome, the stages' fixed reason sets
or the configuration only: never an address, id, URL or anything else a request carries (C15).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector,
                               disable_created_metrics, multiprocess)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from privproxy import __version__
from privproxy.outcome import BeaconConsent, ConsentState, LogStream, Outcome, Result, Source, Stage

if TYPE_CHECKING:
    from privproxy.access_log.record import LogRecord
    from privproxy.beacon import Result as BeaconResult
    from privproxy.client_ip import Client
    from privproxy.pipeline import FlowState
    from privproxy.policy import Policy
    from privproxy.pseudonyms import Pseudonymizer

# Label values of privproxy's own (the rest are enums of privproxy.outcome or reason tuples of the stages).
FAMILIES = ("ipv4", "ipv6")
SCHEMES = ("http", "https")
# Forwarding headers, or a PROXY header, not believed (privproxy.proxy_protocol.REASONS spells them alike).
UNTRUSTED, MALFORMED = "untrusted_peer", "malformed"
ACCEPTED, LOCAL = "accepted", "local"  # PROXY-protocol connections let through
NO_VENDOR = "none"  # privproxy_fields_scrubbed_total{vendor} outside analytics beacons
UNKNOWN = "unknown"
# *_created series double the exposition and carry no information a dashboard uses.
disable_created_metrics()

FILTER_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# Time to an origin's response headers: the buckets below the upstream timeout, then the timeout itself, so
# `_count - _bucket{le="<timeout>"}` counts the answers the proxy gave up on (privproxy_upstream_latency_seconds).
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
DEFAULT_UPSTREAM_TIMEOUT = 60.0  # privproxy run --upstream-timeout's default
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
KEY_MODES = ("key_file", "secret", "ephemeral")  # privproxy.pseudonyms.Pseudonymizer.mode, and "ephemeral" in use
UPSTREAM_SOURCES = (Source.ORIGIN, Source.VENDOR)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The first-party analytics gateway (privproxy.gateway): why a vendor's collector or script host failed, and
# where a tracker script came from.
VENDOR_FAILURES = ("connect", "tls", "timeout", "protocol", "too_large")
SCRIPT_RESULTS = ("hit", "miss", "stale", "failed")


def upstream_buckets(timeout: float) -> tuple[float, ...]:
    """Latency buckets up to the upstream timeout (0: no timeout, buckets up to five minutes)."""
    if timeout <= 0:
        return UPSTREAM_BUCKETS
    return (*(b for b in UPSTREAM_BUCKETS if b < timeout), float(timeout))


def answer_source(outcome: Outcome, beacon: bool, status: int) -> Source | None:
    """Who made the answer a finished request got; None when no answer was sent (the visitor left first)."""
    if outcome == Outcome.FORWARDED or (outcome == Outcome.CLIENT_CLOSED and status != 499):
        return Source.VENDOR if beacon else Source.ORIGIN
    if outcome == Outcome.CLIENT_CLOSED:
        return None
    return Source.PROXY


def status_class(status: int) -> str | None:
    return STATUS_CLASSES[status // 100 - 1] if 100 <= status <= 599 else None


class Labelled:
    """A labelled metric whose children are looked up in a plain dict: prometheus_client's labels() validates
    and locks on every call, and a request touches a dozen series. Label values are bounded sets (C15), and
    the cache stops growing past MAX_CHILDREN all the same."""

    MAX_CHILDREN = 10_000
    __slots__ = ("metric", "_children")

    def __init__(self, metric) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], object] = {}

    def labels(self, *values: str):
        child = self._children.get(values)
        if child is None:
            child = self.metric.labels(*values)
            if len(self._children) < self.MAX_CHILDREN:
                self._children[values] = child
        return child

    def __getattr__(self, name: str):
        return getattr(self.metric, name)


class Tally:
    """The increments of the request path (counters, and the in-flight gauge), applied to prometheus_client in
    batches: each prometheus_client increment takes a lock and three calls, and a beacon makes some twenty (the
    metrics were 11 % of a beacon's instructions; batched, 3 % fewer in all, by callgrind). Every collection of a
    metric counted here applies the pending increments first (its `collect` is wrapped on its first increment),
    whether the whole registry is read or only some names (`/metrics?name[]=...`), so a scrape sees every
    increment made before it. Increments wait in a deque, whose `append` and `popleft` are atomic, and one thread
    at a time applies them (a lock), so an increment is applied once and a reader never sees half a batch. A
    worker (`--workers`) increments at once: the supervisor reads its multiprocess files, not its registry."""

    BATCH = 4096  # pending increments; more are applied on the spot, so memory stays bounded without scrapes

    def __init__(self, defer: bool) -> None:
        self.defer = defer
        self.pending: collections.deque[tuple[object, tuple[str, ...], float]] = collections.deque()
        self._applying = threading.Lock()
        self._wrapped: set[object] = set()

    @staticmethod
    def _apply(metric, labels: tuple[str, ...], amount: float) -> None:
        (metric.labels(*labels) if labels else metric).inc(amount)

    def add(self, metric, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        if not self.defer:
            self._apply(metric, labels, amount)
            return
        if metric not in self._wrapped:
            self._wrap(metric)
        self.pending.append((metric, labels, amount))
        if len(self.pending) > self.BATCH:
            self.flush()

    def extend(self, increments: list[tuple[object, tuple[str, ...], float]]) -> None:
        """Several `add`s in one call (a finished request makes a dozen: one Python call each was 2 % of a
        beacon's instructions)."""
        if not self.defer:
            for increment in increments:
                self._apply(*increment)
            return
        wrapped = self._wrapped
        for metric, _, _ in increments:
            if metric not in wrapped:
                self._wrap(metric)
        self.pending.extend(increments)
        if len(self.pending) > self.BATCH:
            self.flush()

    def _wrap(self, metric) -> None:
        registered = metric.metric if isinstance(metric, Labelled) else metric  # what the registry collects
        collect = registered.collect

        def collect_applied():
            self.flush()
            return collect()

        registered.collect = collect_applied
        self._wrapped.add(metric)

    def flush(self) -> None:
        """Apply every pending increment; returns when the ones another thread was applying are applied too."""
        with self._applying:
            totals: dict[tuple[object, tuple[str, ...]], float] = {}
            pop = self.pending.popleft
            while True:
                try:
                    metric, labels, amount = pop()
                except IndexError:
                    break
                key = (metric, labels)
                totals[key] = totals.get(key, 0.0) + amount
            for (metric, labels), amount in totals.items():
                if amount:
                    self._apply(metric, labels, amount)


def in_worker() -> bool:
    """Values go to prometheus_client's multiprocess files (a worker of `privproxy run --workers`): set in the
    environment before prometheus_client is imported, as prometheus_client itself reads it."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None,
                 upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.tally = Tally(defer=not in_worker())
        self._key_mode: Callable[[], str] | None = None
        self.requests = Counter("privproxy_requests", "Requests answered, by site, scheme and outcome.",
                                ["site", "scheme", "outcome"], registry=r)
        self.redirects = Counter("privproxy_https_redirects", "Plain-HTTP requests redirected to HTTPS.",
                                 ["site"], registry=r)
        self.truncations = Counter("privproxy_ip_truncations", "Client addresses truncated, by family.",
                                   ["family"], registry=r)
        self.forwarding_ignored = Counter(
            "privproxy_forwarding_headers_ignored",
            "Forwarding headers not believed: sent by an untrusted peer, or malformed from a trusted proxy.",
            ["reason"], registry=r)
        self.scrubbed = Counter("privproxy_fields_scrubbed",
                                "Field values changed by a rule, a beacon field role or a detector; vendor is "
                                "`none` outside analytics beacons.",
                                ["scope", "action", "rule", "mode", "vendor"], registry=r)
        self.failures = Counter("privproxy_scrub_failures",
                                "Errors inside privproxy's filters; the request was handled fail-closed.",
                                ["stage"], registry=r)
        self.log_records = Counter("privproxy_log_records", "Log records written: access (anonymous) or linked "
                                   "(consented members).", ["stream"], registry=r)
        self.log_errors = Counter("privproxy_log_write_errors", "Log write failures.",
                                  ["stream", "reason"], registry=r)
        self.reloads = Counter("privproxy_config_reloads", "Configuration (re)loads, by result.", ["result"],
                               registry=r)
        self.reload_success = Gauge("privproxy_config_last_reload_success_timestamp_seconds",
                                    "When the active filters.yaml was loaded.", registry=r, multiprocess_mode="livemax")
        self.config = Info("privproxy_config", "The active filters.yaml.", registry=r)
        self.duration = Histogram("privproxy_request_duration_seconds",
                                  "Time from request start to the end of the response.", ["site"], registry=r)
        self.filter_duration = Histogram("privproxy_filter_duration_seconds",
                                         "CPU time spent in privproxy's own filtering per request.",
                                         buckets=FILTER_BUCKETS, registry=r)
        self.geo_lookups = Counter("privproxy_geo_lookups", "GeoIP lookups of client addresses, by result.",
                                   ["result"], registry=r)
        self.countries = Counter("privproxy_requests_by_country",
                                 "Requests by the visitor's country (ISO 3166-1 alpha-2; unknown when not located).",
                                 ["country"], registry=r)
        self.beacons = Counter("privproxy_beacons", "Analytics beacons received, by vendor and consent state.",
                               ["vendor", "consent"], registry=r)
        self.beacon_failures = Counter(
            "privproxy_beacon_failures",
            "Beacons (or fields inside them) that could not be decoded and were not forwarded, by vendor and reason.",
            ["vendor", "reason"], registry=r)
        self.unclassified = Counter("privproxy_beacon_fields_unclassified",
                                    "Beacon fields that neither the vendor codec nor a rule classifies: the tuning "
                                    "signal for new rules.", ["vendor"], registry=r)
        self.consent = Counter("privproxy_consent_decisions",
                               "Member-linkage consent decisions, one per request: valid, none, why a token was "
                               "refused (malformed, unknown_key, forged, expired, not_yet_valid), or which signal "
                               "overrode a valid one (withdrawn, revoked, gpc, dnt, tcf, beacon_opt_out).",
                               ["state"], registry=r)
        self.proxy_protocol = Counter(
            "privproxy_proxy_protocol_connections",
            "Connections on PROXY-protocol listeners: accepted (client address announced), local (the balancer's "
            "own, e.g. health checks), or refused (untrusted_peer, malformed, timeout, unsupported).",
            ["result"], registry=r)
        self.geo_loads = Counter("privproxy_geo_database_loads", "GeoIP database (re)loads, by result.",
                                 ["result"], registry=r)
        self.certificate_reloads = Counter(
            "privproxy_certificate_reloads",
            "Certificate files re-read after start (changed on disk, or SIGHUP), by result: failure keeps the "
            "certificate in service.", ["result"], registry=r)
        self.refusals = Counter("privproxy_requests_refused",
                               "Requests answered 400 and never forwarded because no origin reads their head one "
                               "way only (malformed target, header or Host), by reason.", ["reason"], registry=r)
        self.protection_disabled = Gauge(
            "privproxy_protection_disabled",
            "1 for each shipped protection the active filters.yaml switches off with `disable:`, else 0 "
            "(ids: privproxy.protections.IDS).", ["protection"], registry=r, multiprocess_mode="livemax")
        self.responses = Counter(
            "privproxy_responses",
            "Answers sent to visitors, by who made them (origin: the site's origin; vendor: the collector behind a "
            "beacon path; proxy: privproxy itself: redirects, refusals, beacons not forwarded, 502/504 when the "
            "origin failed) and status class.", ["source", "class"], registry=r)
        self.in_flight = Gauge("privproxy_requests_in_flight", "Requests received and not yet answered.",
                               registry=r, multiprocess_mode="livesum")
        self.certificate_expiry = Gauge(
            "privproxy_certificate_expiry_timestamp_seconds",
            "When each served certificate expires (its notAfter, seconds since the epoch), by the certificate's "
            "configured name: its first DNS name, else its file name.", ["certificate"], registry=r,
            multiprocess_mode="livemin")
        self.acme_orders = Counter(
            "privproxy_acme_orders",
            "ACME orders (first certificates and renewals of --acme names), by result: a failure is retried with "
            "backoff while the certificate in service, if any, stays.", ["result"], registry=r)
        self.acme_failures = Gauge(
            "privproxy_acme_consecutive_failures",
            "Failed ACME orders in a row for each --acme name since its last certificate (0 after a success).",
            ["certificate"], registry=r, multiprocess_mode="livemax")
        self.key_mode = Gauge(
            "privproxy_pseudonym_key_mode",
            "1 for where the pseudonymization key in use comes from: key_file (shared and rotated), secret (a "
            "shared fixed secret) or ephemeral (a random key of this process: pseudonyms differ between instances "
            "and change at every restart), else 0.", ["mode"], registry=r, multiprocess_mode="livemax")
        self.vendor_forwards = Counter(
            "privproxy_vendor_forwards",
            "Beacons privproxy sent straight to the vendor (beacons.forward), by vendor and the class of the "
            "vendor's answer.", ["vendor", "class"], registry=r)
        self.vendor_failures = Counter(
            "privproxy_vendor_failures",
            "Beacons a vendor's collector did not answer (connect, tls, timeout, protocol, too_large): the visitor "
            "got privproxy's 502 or 504 and nothing reached the site's upstream.",
            ["vendor", "reason"], registry=r)
        self.vendor_latency = Histogram(
            "privproxy_vendor_latency_seconds",
            "Time from a beacon sent to the vendor's collector to its response headers, by vendor.",
            ["vendor"], buckets=UPSTREAM_BUCKETS[:UPSTREAM_BUCKETS.index(60.0) + 1], registry=r)
        self.vendor_opt_outs = Counter(
            "privproxy_vendor_opt_outs",
            "Beacons not sent to a vendor because the visitor's own signal refuses what the vendor is used for "
            "(gpc: Sec-GPC and an advertising vendor; tcf: the TCF string lacks the vendor's or its purposes' "
            "consent; gpp: a US GPP section opts out of sale, sharing or targeted advertising).", ["vendor", "signal"],
            registry=r)
        self.scripts = Counter(
            "privproxy_vendor_scripts",
            "Tracker script requests served from a first-party path (beacons.scripts), by path and where the answer "
            "came from: hit (cache), miss (fetched), stale (the vendor failed: the cached copy), failed (502).",
            ["script", "result"], registry=r)
        # A worker's histogram has its final buckets from the start: multiprocess files keep every bucket written.
        self._upstream_timeout = upstream_timeout
        self.upstream_latency = self._upstream_histogram(upstream_timeout)
        Info("privproxy_build", "privproxy build information.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds...
        for name, value in list(vars(self).items()):
            if isinstance(value, (Counter, Histogram)) and getattr(value, "_labelnames", ()):
                setattr(self, name, Labelled(value))
        self._preinit_edge()

    def _upstream_histogram(self, timeout: float) -> Histogram:
        return Histogram("privproxy_upstream_latency_seconds",
                         "Time from a request sent upstream (the origin, or the collector behind a beacon path) to "
                         "its response headers; buckets up to the upstream timeout, whose expiry is observed too.",
                         ["source"], buckets=upstream_buckets(timeout), registry=self.registry)

    def _preinit_edge(self) -> None:
        for source in Source:
            for cls in STATUS_CLASSES:
                self.responses.labels(source, cls)
        for source in UPSTREAM_SOURCES:
            self.upstream_latency.labels(source)
        for mode in KEY_MODES:
            self.key_mode.labels(mode).set(0)

    # --- The observe door: adapters report what happened here, never through .labels() themselves. ---------------

    def observe(self, state: FlowState, record: LogRecord | None) -> None:
        """One finished flow: its record (outcome, duration, country), then what the pipeline decided and did."""
        site = state.site.name
        batch: list[tuple[object, tuple[str, ...], float]] = [
            (self.geo_lookups, (state.geo_result,), 1.0), (self.consent, (state.decision.state,), 1.0)]
        if record is not None:
            batch += ((self.requests, (site, record.scheme, record.outcome), 1.0),
                      (self.countries, (state.place.country or UNKNOWN,), 1.0))
            self.duration.labels(site).observe(record.duration_ms / 1000)
            source = answer_source(record.outcome, state.codec is not None or state.script is not None, record.status)
            cls = status_class(record.status)
            if source is not None and cls is not None:
                batch.append((self.responses, (source, cls), 1.0))
        vendor = state.codec.name if state.codec is not None else NO_VENDOR
        counts: dict[tuple[str, str, str, str, str], int] = {}
        for c in state.changes:  # one increment per series, not per field: a beacon changes dozens
            key = (c.scope, c.action, c.rule, _mode(c.report_only), vendor)
            counts[key] = counts.get(key, 0) + 1
        scrubbed = self.scrubbed
        batch += [(scrubbed, key, n) for key, n in counts.items()]
        batch += [(self.failures, (stage,), 1.0) for stage, _reason in state.failures]
        self.tally.extend(batch)
        self.filter_duration.observe(state.filter_seconds)

    def client(self, client: Client) -> None:
        """A resolved client: its address truncated, and forwarding headers not believed."""
        self.tally.add(self.truncations, (client.family,))
        if client.ignored_headers:
            self.tally.add(self.forwarding_ignored, (UNTRUSTED,))
        if client.malformed:
            self.tally.add(self.forwarding_ignored, (MALFORMED,))

    def redirected(self, site: str) -> None:
        self.redirects.labels(site).inc()

    def refused(self, reason: str) -> None:
        """A request answered 400 for its head (a privproxy.wire.REASONS value)."""
        self.refusals.labels(reason).inc()

    def beacon(self, result: BeaconResult, consent: bool) -> None:
        """A beacon decoded: by vendor and consent, its unclassified fields, nested fields that did not decode."""
        add = self.tally.add
        add(self.beacons, (result.vendor, BeaconConsent.GIVEN if consent else BeaconConsent.NONE))
        if result.unclassified:
            add(self.unclassified, (result.vendor,), result.unclassified)
        for reason in result.field_errors:
            add(self.beacon_failures, (result.vendor, reason))

    def beacon_refused(self, vendor: str, reason: str) -> None:
        """A beacon answered here, not forwarded (a privproxy.beacon.FAILURE_REASONS value)."""
        self.beacon_failures.labels(vendor, reason or UNKNOWN).inc()

    def vendor_answered(self, vendor: str, status: int, seconds: float) -> None:
        """A vendor answered a beacon the gateway sent (vendor: a configured vendor name)."""
        cls = status_class(status)
        if cls is not None:
            self.vendor_forwards.labels(vendor, cls).inc()
        self.vendor_latency.labels(vendor).observe(max(0.0, seconds))
        self.upstream_latency.labels(Source.VENDOR).observe(max(0.0, seconds))

    def vendor_failed(self, vendor: str, reason: str) -> None:
        """A vendor's collector or script host failed (reason: a VENDOR_FAILURES value)."""
        self.vendor_failures.labels(vendor, reason).inc()

    def vendor_opted_out(self, vendor: str, signal: str) -> None:
        """A beacon kept from a vendor by the visitor's signal (a privproxy.vendor_consent.REFUSALS value)."""
        self.vendor_opt_outs.labels(vendor, signal).inc()

    def script_served(self, script: str, result: str) -> None:
        """A tracker script request (script: its configured path; result: a SCRIPT_RESULTS value)."""
        self.scripts.labels(script, result).inc()

    def failure(self, stage: Stage) -> None:
        """A filter failed outside the pipeline's own record of failures (FlowState.failures)."""
        self.failures.labels(stage).inc()

    def log_written(self, stream: LogStream) -> None:
        self.tally.add(self.log_records, (stream,))

    def log_error(self, stream: str, reason: str) -> None:
        """A log write failed (stream a LogStream value, reason a privproxy.access_log.sink.ERROR_REASONS one)."""
        self.log_errors.labels(stream, reason).inc()

    def reload(self, result: Result) -> None:
        self.reloads.labels(result).inc()

    def geo_load(self, result: Result) -> None:
        self.geo_loads.labels(result).inc()

    def certificate_reload(self, result: Result) -> None:
        self.certificate_reloads.labels(result).inc()

    def proxy_connection(self, result: str) -> None:
        """A connection on a PROXY-protocol listener: ACCEPTED, LOCAL or a privproxy.proxy_protocol.REASONS value."""
        self.proxy_protocol.labels(result).inc()

    def policy_loaded(self, policy: Policy, when: float) -> None:
        """A Policy swapped in: its series zeroed, its switched-off protections, its key source and its hash."""
        self.preinit(policy.sites.names, policy.rules.rules)
        for s in policy.beacons.scripts:
            for result in SCRIPT_RESULTS:
                self.scripts.labels(s.path, result)
        self.protections(policy.disabled)
        self.pseudonym_keys(policy.scrubber.pseudonymizer)
        self.config.info({"sha256": policy.sha256})
        self.reload_success.set(when)

    # --- The edge: answers, the origin's latency, requests in flight, certificates ----------------------------------

    def request_started(self) -> None:
        self.tally.add(self.in_flight, (), 1.0)

    def request_ended(self) -> None:
        self.tally.add(self.in_flight, (), -1.0)

    def upstream_latency_observed(self, source: Source, seconds: float) -> None:
        """A response's headers arrived this long after its request went upstream (source ORIGIN or VENDOR)."""
        self.upstream_latency.labels(source).observe(max(0.0, seconds))

    def upstream_timeout(self, seconds: float) -> None:
        """The upstream timeout in force: the latency histogram's buckets end there. A change (rare: an option
        set at start) starts the histogram anew, as a restart would."""
        if seconds == self._upstream_timeout:
            return
        self._upstream_timeout = seconds
        self.registry.unregister(self.upstream_latency.metric)
        self.upstream_latency = Labelled(self._upstream_histogram(seconds))
        for source in UPSTREAM_SOURCES:
            self.upstream_latency.labels(source)

    def certificate(self, name: str, not_after: float) -> None:
        """A certificate privproxy serves, loaded or reloaded: `name` is a configured name (its first DNS name,
        else its file name: privproxy.mitm.exporter.certificate_name), never anything a request carries;
        `not_after` its expiry in seconds since the epoch."""
        self.certificate_expiry.labels(name).set(not_after)

    def acme_order(self, name: str, result: Result, consecutive_failures: int) -> None:
        """An ACME order for the --acme name `name` (configuration, never a request) ended."""
        self.acme_orders.labels(result).inc()
        self.acme_failures.labels(name).set(consecutive_failures)

    def acme_name(self, name: str, consecutive_failures: int) -> None:
        """An --acme name at start: its failures in a row so far (kept on disk across restarts)."""
        self.acme_failures.labels(name).set(consecutive_failures)

    def certificate_removed(self, name: str) -> None:
        """A certificate no longer served: its series goes, so its expiry alerts no one."""
        try:
            self.certificate_expiry.remove(name)
        except KeyError:
            pass

    def pseudonym_keys(self, pseudonymizer: Pseudonymizer) -> None:
        """Where the key in use comes from, read at each scrape: a key file that becomes readable (or not) shows
        at once. "ephemeral" also when a configured key file could not be read yet."""

        def current() -> str:
            return "ephemeral" if pseudonymizer.ephemeral else pseudonymizer.mode

        if in_worker():  # no function gauges in the files: set now, and again at each refresh()
            self._key_mode = current
            self.refresh()
            return
        for mode in KEY_MODES:
            self.key_mode.labels(mode).set_function(lambda m=mode: 1.0 if current() == m else 0.0)

    def refresh(self) -> None:
        """Values read from the process's state (a worker calls it every second): the pseudonym key's source."""
        if self._key_mode is not None:
            now = self._key_mode()
            for mode in KEY_MODES:
                self.key_mode.labels(mode).set(1.0 if now == mode else 0.0)

    # --- Set-up ---------------------------------------------------------------------------------------------------

    def protections(self, disabled: tuple[str, ...]) -> None:
        """Set on every policy swap: label values only from the fixed id set, never from the file."""
        from privproxy.protections import IDS

        for pid in IDS:
            self.protection_disabled.labels(pid).set(1 if pid in disabled else 0)

    def preinit(self, sites: tuple[str, ...], rules=()) -> None:
        """Zero series for every known label value, so rate() and alerts work before the first event."""
        from privproxy.access_log.sink import ERROR_REASONS
        from privproxy.beacon import FAILURE_REASONS
        from privproxy.vendor_consent import REFUSALS as OPT_OUTS
        from privproxy.geo import RESULTS
        from privproxy.proxy_protocol import REASONS
        from privproxy.vendors import VENDORS
        from privproxy.wire import REASONS as REFUSALS

        for site in sites:
            self.redirects.labels(site)
            for scheme in SCHEMES:
                for outcome in Outcome:
                    self.requests.labels(site, scheme, outcome)
        for fam in FAMILIES:
            self.truncations.labels(fam)
        for reason in (UNTRUSTED, MALFORMED):
            self.forwarding_ignored.labels(reason)
        for result in Result:
            self.reloads.labels(result)
            self.geo_loads.labels(result)
            self.certificate_reloads.labels(result)
            self.acme_orders.labels(result)
        for result in RESULTS:
            self.geo_lookups.labels(result)
        self.countries.labels(UNKNOWN)
        for reason in REFUSALS:
            self.refusals.labels(reason)
        for vendor in VENDORS:
            self.unclassified.labels(vendor)
            self.vendor_latency.labels(vendor)
            for cls in STATUS_CLASSES:
                self.vendor_forwards.labels(vendor, cls)
            for reason in VENDOR_FAILURES:
                self.vendor_failures.labels(vendor, reason)
            for signal in OPT_OUTS:
                self.vendor_opt_outs.labels(vendor, signal)
            for consent in BeaconConsent:
                self.beacons.labels(vendor, consent)
            for reason in FAILURE_REASONS:
                self.beacon_failures.labels(vendor, reason)
        for stage in Stage:
            self.failures.labels(stage)
        for state in ConsentState:
            self.consent.labels(state)
        for result in (ACCEPTED, LOCAL, *REASONS):
            self.proxy_protocol.labels(result)
        for stream in LogStream:
            self.log_records.labels(stream)
            for reason in ERROR_REASONS:
                self.log_errors.labels(stream, reason)
        for rule in rules:
            for scope in rule.scopes:
                self.scrubbed.labels(scope, rule.action, rule.id, _mode(rule.report_only), NO_VENDOR)


def _mode(report_only: bool) -> str:
    return "report_only" if report_only else "enforce"


# --- `privproxy run --workers`: the supervisor's registry, the workers' summed ------------------------------------


class WorkerMetrics:
    """The supervisor's /metrics: every worker's privproxy_* series summed from prometheus_client's multiprocess
    files (a dead worker's counts stay in its files, so counters never go backwards when one is replaced), the
    supervisor's own series, the build, the rules the workers run, and process_* over the whole group."""

    def __init__(self, directory: Path, pids: Callable[[], list[int]], shas: Callable[[], list[str]],
                 workers: int, ready: Callable[[], int]) -> None:
        self.directory = directory
        self.registry = r = CollectorRegistry()
        multiprocess.MultiProcessCollector(r, path=str(directory))
        self.restarts = Counter("privproxy_worker_restarts", "Workers replaced after they ended unasked (crash, "
                                "kill, out of memory), each after a backoff.", registry=r)
        self.reload_rounds = Counter("privproxy_worker_reload_rounds",
                                     "Configuration reloads across all workers: success when every worker runs the "
                                     "new rules, failure when the file was refused (no worker reloads it) or a "
                                     "worker kept the previous rules.", ["result"], registry=r)
        for result in Result:
            self.reload_rounds.labels(result)
        Gauge("privproxy_workers", "Worker processes configured (--workers).", registry=r).set(workers)
        Gauge("privproxy_workers_ready", "Worker processes serving now.", registry=r).set_function(
            lambda: float(ready()))
        Info("privproxy_build", "privproxy build information.", registry=r).info({"version": __version__})
        r.register(_Group(pids, shas))

    def restarted(self) -> None:
        self.restarts.inc()

    def reload_round(self, result: Result) -> None:
        self.reload_rounds.labels(result).inc()

    def worker_gone(self, pid: int) -> None:
        """A worker ended: its live gauges (requests in flight...) leave the sums; its counters stay."""
        multiprocess.mark_process_dead(pid, str(self.directory))


class _Group:
    """privproxy_config_info for the rules the workers report (two series while they disagree), and the process
    metrics of the supervisor and its workers together. CPU of ended workers is the kernel's count of the
    supervisor's reaped children, so process_cpu_seconds_total never goes backwards either."""

    def __init__(self, pids: Callable[[], list[int]], shas: Callable[[], list[str]]) -> None:
        self.pids, self.shas = pids, shas
        self.tick = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = time.time()

    def collect(self) -> Iterable[object]:
        info = InfoMetricFamily("privproxy_config", "The active filters.yaml (one series per version the workers "
                                "run: two while a reload is under way or a worker kept the previous rules).")
        for sha in sorted(set(self.shas())):
            info.add_metric([], {"sha256": sha})
        yield info
        t = os.times()
        cpu = t.user + t.system + t.children_user + t.children_system
        rss = _rss(Path("/proc/self/statm"), self.page)
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            cpu += (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime
            rss += _rss(Path(f"/proc/{pid}/statm"), self.page)
        yield CounterMetricFamily("process_cpu_seconds", "CPU time of the supervisor and every worker, past and "
                                  "present, in seconds.", value=cpu)
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory of the supervisor and its live "
                                "workers, in bytes.", value=rss)
        yield GaugeMetricFamily("process_start_time_seconds", "When the supervisor started, seconds since the epoch.",
                                value=self.start)


def _rss(statm: Path, page: int) -> float:
    try:
        return int(statm.read_text().split()[1]) * page
    except (OSError, IndexError, ValueError):
        return 0.0
