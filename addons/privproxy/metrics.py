"""Every privproxy_* metric, on an injected registry. Label values come from the config or fixed sets only:
never an address, id, URL or anything else a request carries (C15).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from privproxy import __version__

# How a request ended (the access-log record's `outcome`): forwarded to the origin; answered by privproxy itself
# (redirected to HTTPS, refused for its Host, bad_request for a head no origin reads one way only, not_forwarded
# for a beacon that cannot be decoded, head_too_large, head_timeout, too_large for a body over the limit,
# upgrade_refused for a 101 that is no WebSocket); client_closed before its answer; or an origin failure.
OUTCOMES = ("forwarded", "redirected", "refused", "bad_request", "not_forwarded", "head_too_large", "head_timeout",
            "too_large", "upgrade_refused", "client_closed", "upstream_error", "upstream_timeout", "error")
# Where a filter can fail; each failure is handled fail-closed and counted under its stage.
FAILURE_STAGES = ("requestheaders", "classify", "client_ip", "cookie", "set_cookie", "https_redirect",
                  "https_headers", "access_log", "log_path", "log_referrer", "beacon")
CONSENT_STATES = ("none", "given")
LOG_STREAMS = ("access", "linked")
# *_created series double the exposition and carry no information a dashboard uses.
disable_created_metrics()

FILTER_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


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


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
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
                                    "When the active filters.yaml was loaded.", registry=r)
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
        self.refused = Counter("privproxy_requests_refused",
                               "Requests answered 400 and never forwarded because no origin reads their head one "
                               "way only (malformed target, header or Host), by reason.", ["reason"], registry=r)
        self.protection_disabled = Gauge(
            "privproxy_protection_disabled",
            "1 for each shipped protection the active filters.yaml switches off with `disable:`, else 0 "
            "(ids: privproxy.protections.IDS).", ["protection"], registry=r)
        Info("privproxy_build", "privproxy build information.", registry=r).info({"version": __version__})
        for name, value in list(vars(self).items()):
            if isinstance(value, (Counter, Histogram)) and getattr(value, "_labelnames", ()):
                setattr(self, name, Labelled(value))

    def protections(self, disabled: tuple[str, ...]) -> None:
        """Set on every policy swap: label values only from the fixed id set, never from the file."""
        from privproxy.protections import IDS

        for pid in IDS:
            self.protection_disabled.labels(pid).set(1 if pid in disabled else 0)

    def preinit(self, sites: tuple[str, ...], rules=()) -> None:
        """Zero series for every known label value, so rate() and alerts work before the first event."""
        from privproxy.access_log.sink import ERROR_REASONS

        for site in sites:
            self.redirects.labels(site)
            for scheme in ("http", "https"):
                for outcome in OUTCOMES:
                    self.requests.labels(site, scheme, outcome)
        for fam in ("ipv4", "ipv6"):
            self.truncations.labels(fam)
        for reason in ("untrusted_peer", "malformed"):
            self.forwarding_ignored.labels(reason)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        from privproxy.geo import RESULTS

        for result in RESULTS:
            self.geo_lookups.labels(result)
        for result in ("success", "failure"):
            self.geo_loads.labels(result)
        self.countries.labels("unknown")
        from privproxy.wire import REASONS as REFUSALS

        for reason in REFUSALS:
            self.refused.labels(reason)
        from privproxy.beacon import FAILURE_REASONS
        from privproxy.vendors import VENDORS

        for vendor in VENDORS:
            self.unclassified.labels(vendor)
            for consent in CONSENT_STATES:
                self.beacons.labels(vendor, consent)
            for reason in FAILURE_REASONS:
                self.beacon_failures.labels(vendor, reason)
        for stage in FAILURE_STAGES:
            self.failures.labels(stage)
        from privproxy.consent.decision import STATES

        for state in STATES:
            self.consent.labels(state)
        from privproxy.proxy_protocol import REASONS

        for result in ("accepted", "local", *REASONS):
            self.proxy_protocol.labels(result)
        for stream in LOG_STREAMS:
            self.log_records.labels(stream)
            for reason in ERROR_REASONS:
                self.log_errors.labels(stream, reason)
        for rule in rules:
            for scope in rule.scopes:
                self.scrubbed.labels(scope, rule.action, rule.id, "report_only" if rule.report_only else "enforce",
                                     "none")
