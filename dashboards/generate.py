"""Writes dashboards/dashboards/privproxy.json. Run `python dashboards/generate.py` after editing panels here;
a test fails when the committed JSON and this file disagree."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "dashboards" / "privproxy.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
R = "$__rate_interval"


def target(expr: str, legend: str = "", ref: str = "A") -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": True}


def instant(expr: str, legend: str = "", ref: str = "A") -> dict:
    """A table's query: one evaluation at the end of the range, one row per series (Grafana's "Instant" + "Table")."""
    return {**target(expr, legend, ref), "format": "table", "instant": True, "range": False}


def steps(*pairs: tuple[str, float | None]) -> dict:
    """Absolute thresholds: the first color from minus infinity, each next one from its value up."""
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in pairs]}


OK = steps(("green", None))  # a panel whose values carry no judgement
# The alerting thresholds of dashboards/alerts/privproxy.rules.yml, drawn on the panels that show the same thing.
SHARE_5XX = steps(("green", None), ("orange", 0.01), ("red", 0.05))
UPSTREAM_P95 = steps(("green", None), ("red", 1.0))
CERT_DAYS = steps(("red", None), ("orange", 14), ("green", 30))


def quantiles(histogram: str, qs=((0.5, "p50", "A"), (0.99, "p99", "B"))) -> list[dict]:
    return [target(f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{SEL}}}[{R}])))", name, ref)
            for q, name, ref in qs]


def ours(expr: str) -> str:
    """Only privproxy's targets: process_* series come from every exporter, and $instance may be All (.*)."""
    return f"({expr} and on (job, instance) privproxy_build_info)"


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def add(self, kind: str, title: str, desc: str, targets: list[dict], w: int = 12, unit: str = "short",
            thresholds: dict | None = None, **extra) -> None:
        if self.x + w > 24:
            self.y += 8
            self.x = 0
        defaults: dict = {"unit": unit}
        if thresholds is not None or kind in ("stat", "table"):
            defaults["thresholds"] = thresholds or OK
        if kind == "timeseries" and thresholds is not None:
            defaults["custom"] = {"thresholdsStyle": {"mode": "line+area"}}
        if kind == "table" and thresholds is not None:
            defaults["custom"] = {"cellOptions": {"type": "color-background"}}
        options = {
            "timeseries": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}},
            "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "value" if thresholds is not None else "none", "graphMode": "area",
                     "textMode": "auto"},
            "table": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
        }.get(kind, {})
        panel = {
            "type": kind, "title": title, "description": desc, "id": self._id(), "datasource": DS,
            "gridPos": {"h": 8, "w": w, "x": self.x, "y": self.y}, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options,
        }
        if kind == "table":  # one row per series: the instant query's labels as columns, its value last
            panel["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
        panel.update(extra)
        self.panels.append(panel)
        self.x += w

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def build() -> dict:
    L = Layout()
    L.row("Traffic and HTTPS (C1)")
    L.add("timeseries", "Requests by site and scheme", "Requests answered per second.", [
        target(f"sum by (site, scheme) (rate(privproxy_requests_total{{{SEL}}}[{R}]))", "{{site}} {{scheme}}")],
        unit="reqps")
    L.add("stat", "HTTPS share", "Share of answered requests that arrived over HTTPS (or via a trusted TLS "
          "load balancer). Plain HTTP is only redirects and exempt paths.", [
        target(f"sum(rate(privproxy_requests_total{{{SEL},scheme=\"https\"}}[{R}])) / "
               f"sum(rate(privproxy_requests_total{{{SEL}}}[{R}]))")], w=6, unit="percentunit")
    L.add("stat", "HTTPS redirects", "Plain-HTTP requests redirected to HTTPS in the selected range.", [
        target(f"sum(increase(privproxy_https_redirects_total{{{SEL}}}[$__range]))")], w=6)
    L.add("timeseries", "Outcomes", "Forwarded, redirected, refused (bad Host), upstream errors.", [
        target(f"sum by (outcome) (rate(privproxy_requests_total{{{SEL}}}[{R}]))", "{{outcome}}")], unit="reqps")
    L.add("timeseries", "Client addresses truncated", "Every client address is truncated (/24, /48) before "
          "anything sees it (C2, C8).", [
        target(f"sum by (family) (rate(privproxy_ip_truncations_total{{{SEL}}}[{R}]))", "{{family}}")],
        unit="ops")
    L.row("Edge: answers, origin, certificates (C1, C15)")
    L.add("timeseries", "Answers by source and status class", "Who answered (origin: the site; vendor: the "
          "collector behind a beacon path; proxy: privproxy itself: redirects, refusals, 502/504 when the origin "
          "failed) and with which status class.", [
        target(f"sum by (source, class) (rate(privproxy_responses_total{{{SEL}}}[{R}]))", "{{source}} {{class}}")],
        unit="reqps")
    L.add("stat", "5xx share", "Share of answers that were server errors (the PrivproxyHigh5xxShare alert fires "
          "above 5% for 10 minutes).", [
        target(f"sum(rate(privproxy_responses_total{{{SEL},class=\"5xx\"}}[{R}])) / "
               f"sum(rate(privproxy_responses_total{{{SEL}}}[{R}]))")], w=6, unit="percentunit",
        thresholds=SHARE_5XX)
    L.add("stat", "Requests in flight", "Requests received and not yet answered, all instances.", [
        target(f"sum(privproxy_requests_in_flight{{{SEL}}})")], w=6)
    L.add("timeseries", "Origin latency p50 / p95 / p99", "From the request sent upstream to the origin's "
          "response headers (privproxy's own time excluded); the PrivproxyUpstreamSlow alert fires when p95 stays "
          "above the red line. A request that reaches --upstream-timeout is answered 504.",
          quantiles("privproxy_upstream_latency_seconds",
                    ((0.5, "p50", "A"), (0.95, "p95", "B"), (0.99, "p99", "C"))), unit="s", thresholds=UPSTREAM_P95)
    L.add("table", "Certificates: days left", "Each served certificate by name, days until it expires (the "
          "PrivproxyCertificateExpiringSoon alert fires below 14).", [
        instant(f"min by (certificate) ((privproxy_certificate_expiry_timestamp_seconds{{{SEL}}} - time()) / 86400)",
                "{{certificate}}")], w=6, unit="d", thresholds=CERT_DAYS)
    L.add("table", "Pseudonym key and switched-off protections", "Per instance: where the pseudonymization key "
          "comes from (ephemeral: a throwaway key, pseudonyms disagree between instances) and the shipped "
          "protections the active filters.yaml switches off (report-only: nothing is applied).", [
        instant(f"max by (instance, mode) (privproxy_pseudonym_key_mode{{{SEL}}} == 1)", "{{mode}}"),
        instant(f"max by (instance, protection) (privproxy_protection_disabled{{{SEL}}} == 1)", "{{protection}}",
                "B")], w=6)
    L.row("Identifiers (C2, C4, C8, C10)")
    L.add("timeseries", "Identifiers scrubbed by rule", "Field values changed by each rule, detector or "
          "sensitive path.", [
        target(f"sum by (rule, action) (rate(privproxy_fields_scrubbed_total{{{SEL},mode=\"enforce\"}}[{R}]))",
               "{{rule}} ({{action}})")], unit="ops")
    L.add("timeseries", "Identifiers scrubbed by scope", "Where identifiers were found: query, cookie, "
          "set_cookie, referrer, path.", [
        target(f"sum by (scope) (rate(privproxy_fields_scrubbed_total{{{SEL},mode=\"enforce\"}}[{R}]))",
               "{{scope}}")], unit="ops")
    L.add("table", "Report-only rules: what they would change", "Rules in report_only mode, counted but not "
          "applied: evidence for tuning before enforcing.", [
        instant(f"sum by (rule, scope, action) (increase(privproxy_fields_scrubbed_total{{{SEL},"
                f"mode=\"report_only\"}}[$__range]))", "{{rule}}")])
    L.add("timeseries", "Forwarding headers ignored", "X-Forwarded-For/Forwarded from untrusted peers "
          "(spoofing attempts or a missing --trusted-proxy) and malformed ones.", [
        target(f"sum by (reason) (rate(privproxy_forwarding_headers_ignored_total{{{SEL}}}[{R}]))",
               "{{reason}}")], unit="ops")
    L.row("Analytics beacons (C4, C6, C13)")
    L.add("timeseries", "Beacons by vendor", "Analytics beacons received on first-party collection paths.", [
        target(f"sum by (vendor) (rate(privproxy_beacons_total{{{SEL}}}[{R}]))", "{{vendor}}")], unit="reqps")
    L.add("stat", "Consent share", "Share of beacons sent with a verified member-linkage consent; every other "
          "beacon is scrubbed.", [
        target(f"sum(rate(privproxy_beacons_total{{{SEL},consent=\"given\"}}[{R}])) / "
               f"sum(rate(privproxy_beacons_total{{{SEL}}}[{R}]))")], w=6, unit="percentunit")
    L.add("timeseries", "Beacon errors (not forwarded)", "Beacons, or fields inside them, that could not be "
          "decoded and were answered without forwarding or dropped, by vendor and reason.", [
        target(f"sum by (vendor, reason) (rate(privproxy_beacon_failures_total{{{SEL}}}[{R}]))",
               "{{vendor}}: {{reason}}")], w=6, unit="ops")
    L.add("timeseries", "Identifiers scrubbed by vendor", "Beacon fields pseudonymized, truncated, generalized "
          "or dropped, by vendor and action.", [
        target(f"sum by (vendor, action) (rate(privproxy_fields_scrubbed_total{{{SEL},mode=\"enforce\","
               f"vendor!=\"none\"}}[{R}]))", "{{vendor}} ({{action}})")], unit="ops")
    L.add("table", "Unclassified beacon fields", "Fields that neither the vendor codec nor a rule knows, scanned "
          "by the detectors: write a `body` rule for the frequent ones (the tuning signal).", [
        instant(f"sum by (vendor) (increase(privproxy_beacon_fields_unclassified_total{{{SEL}}}[$__range]))",
                "{{vendor}}")])
    L.row("Analytics gateway (C4, C5, C6)")
    L.add("timeseries", "Beacons sent to vendors", "Beacons privproxy sent straight to each vendor's collector "
          "(beacons.forward), by the class of the vendor's answer.", [
        target(f"sum by (vendor, class) (rate(privproxy_vendor_forwards_total{{{SEL}}}[{R}]))",
               "{{vendor}} {{class}}")], w=8, unit="reqps")
    L.add("timeseries", "Vendor failures", "Beacons a vendor did not answer (connect, tls, timeout, protocol, "
          "too_large): the visitor got 502/504, nothing went to the origin. PrivproxyVendorFailing fires at 10%.", [
        target(f"sum by (vendor, reason) (rate(privproxy_vendor_failures_total{{{SEL}}}[{R}]))",
               "{{vendor}}: {{reason}}")], w=8, unit="ops")
    L.add("timeseries", "Vendor latency p95", "Time from a beacon sent to the vendor to its response headers.", [
        target(f"histogram_quantile(0.95, sum by (le, vendor) (rate(privproxy_vendor_latency_seconds_bucket"
               f"{{{SEL}}}[{R}])))", "{{vendor}}")], w=8, unit="s")
    L.add("timeseries", "Tracker scripts", "Scripts served from first-party paths (beacons.scripts): hit (cache), "
          "miss (fetched), stale (the vendor failed: the cached copy), failed (502).", [
        target(f"sum by (script, result) (rate(privproxy_vendor_scripts_total{{{SEL}}}[{R}]))",
               "{{script}} {{result}}")], w=10, unit="reqps")
    L.add("stat", "Script cache hits", "Share of tracker script requests answered from the cache.", [
        target(f"sum(rate(privproxy_vendor_scripts_total{{{SEL},result=\"hit\"}}[{R}])) / "
               f"sum(rate(privproxy_vendor_scripts_total{{{SEL}}}[{R}]))")], w=4, unit="percentunit")
    L.add("timeseries", "Beacons kept from vendors by visitors' signals", "Consent per vendor: Sec-GPC or a GPP "
          "opt-out and an advertising vendor, or a TCF string without the vendor's consent (only ever stricter).", [
        target(f"sum by (vendor, signal) (rate(privproxy_vendor_opt_outs_total{{{SEL}}}[{R}]))",
               "{{vendor}}: {{signal}}")], w=10, unit="ops")
    L.row("Member consent (C5, C12, C13)")
    L.add("timeseries", "Consent decisions by state", "One decision per request: valid (the member is linked), "
          "none (no token), why a token was refused (forged, expired, malformed, unknown_key, not_yet_valid), "
          "or which signal overrode a valid one (withdrawn, revoked, gpc, dnt, tcf, beacon_opt_out).", [
        target(f"sum by (state) (rate(privproxy_consent_decisions_total{{{SEL}}}[{R}]))", "{{state}}")],
        w=10, unit="reqps")
    L.add("stat", "Linked share", "Share of requests linked to a member with valid consent; the rest are anonymous.", [
        target(f"sum(rate(privproxy_consent_decisions_total{{{SEL},state=\"valid\"}}[{R}])) / "
               f"sum(rate(privproxy_consent_decisions_total{{{SEL}}}[{R}]))")], w=4, unit="percentunit")
    L.add("timeseries", "Refused and overridden tokens", "Tokens that did not count (a burst of forged or "
          "unknown_key usually means the member system and the proxy disagree on keys) and valid tokens that a "
          "visitor's own signal overrode.", [
        target(f"sum by (state) (rate(privproxy_consent_decisions_total{{{SEL},state!~\"valid|none\"}}[{R}]))",
               "{{state}}")], w=10, unit="ops")
    L.add("timeseries", "Log records by stream", "Anonymous access-log records and linked records (consented "
          "members, with their id); write errors are under Health.", [
        target(f"sum by (stream) (rate(privproxy_log_records_total{{{SEL}}}[{R}]))", "{{stream}}")], unit="ops")
    L.row("Geography (C9, C14)")
    L.add("geomap", "Visitors by country", "Requests by country in the selected range (ISO codes, from the full "
          "address before truncation; rare regions are coarsened by the small-cell guard).", [
        instant(f"sum by (country) (increase(privproxy_requests_by_country_total{{{SEL},country!=\"unknown\"}}"
                f"[$__range]))", "{{country}}")],
        w=16, options={
            "view": {"id": "zero", "lat": 0, "lon": 0, "zoom": 1},
            "controls": {"showZoom": True, "mouseWheelZoom": False},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [{"type": "markers", "name": "Requests",
                        "location": {"mode": "lookup", "lookup": "country",
                                     "gazetteer": "public/gazetteer/countries.json"},
                        "config": {"size": {"field": "Value", "min": 3, "max": 30, "fixed": 5},
                                   "showLegend": True}}]})
    L.add("timeseries", "GeoIP lookups", "found, not_found (address not in the database), error, disabled "
          "(no database). A database that fails to load on reload is counted separately.", [
        target(f"sum by (result) (rate(privproxy_geo_lookups_total{{{SEL}}}[{R}]))", "{{result}}"),
        target(f"sum(increase(privproxy_geo_database_loads_total{{{SEL},result=\"failure\"}}[{R}]))",
               "database load failures", "B")], w=8, unit="ops")
    L.row("Health")
    L.add("timeseries", "Filtering latency p50 / p99", "CPU time privproxy's own filters spend per request.",
          quantiles("privproxy_filter_duration_seconds"), unit="s")
    L.add("timeseries", "Request duration p50 / p99", "From request start to the end of the response, "
          "origin time included.", quantiles("privproxy_request_duration_seconds"), unit="s")
    L.add("timeseries", "Filter failures (handled fail-closed)", "Errors inside privproxy's filters by stage; "
          "each request was still served, without the data the failed filter guards.", [
        target(f"sum by (stage) (rate(privproxy_scrub_failures_total{{{SEL}}}[{R}]))", "{{stage}}")], unit="ops")
    L.add("timeseries", "Access log records and write errors", "Records written, and failed writes by reason "
          "(full disk, permissions).", [
        target(f"sum by (stream) (rate(privproxy_log_records_total{{{SEL}}}[{R}]))", "{{stream}} records"),
        target(f"sum by (stream, reason) (rate(privproxy_log_write_errors_total{{{SEL}}}[{R}]))",
               "{{stream}} errors: {{reason}}", "B")], unit="ops")
    L.add("timeseries", "Config reloads", "filters.yaml reloads by result; a failure keeps the previous rules.", [
        target(f"sum by (result) (increase(privproxy_config_reloads_total{{{SEL}}}[{R}]))", "{{result}}")])
    L.add("timeseries", "Process CPU and memory", "CPU used (1 = one core; mitmproxy uses one per process) and "
          "resident memory, per instance.", [
        target(ours(f"rate(process_cpu_seconds_total{{{SEL}}}[{R}])"), "{{instance}} CPU"),
        target(ours(f"process_resident_memory_bytes{{{SEL}}}") + " / 2^30", "{{instance}} memory (GiB)", "B")])
    L.add("stat", "Open file descriptors", "Sockets and files open, as a share of the process limit: each "
          "connection holds one or two.", [
        target(f"max({ours(f'process_open_fds{{{SEL}}}')} / {ours(f'process_max_fds{{{SEL}}}')})")], w=6,
        unit="percentunit", thresholds=steps(("green", None), ("orange", 0.8), ("red", 0.9)))
    L.add("stat", "Config age", "Time since the active filters.yaml was loaded, per instance.", [
        target(f"time() - max by (instance) (privproxy_config_last_reload_success_timestamp_seconds{{{SEL}}})",
               "{{instance}}")], w=6, unit="s")
    L.add("table", "Active config per instance", "The sha256 of each instance's filters.yaml: instances that "
          "disagree have not reloaded the same file.", [
        instant(f"max by (instance, sha256) (privproxy_config_info{{{SEL}}})", "{{sha256}}")], w=6)
    return {
        "title": "privproxy", "uid": "privproxy-overview", "tags": ["privproxy", "privacy"],
        "description": "What privproxy did to traffic: HTTPS, truncation, identifiers scrubbed, health. "
                       "Never who: no label carries user data.",
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "utc",
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": ""},
            {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
             "query": {"query": "label_values(privproxy_build_info, instance)", "refId": "instance"},
             "refresh": 2, "includeAll": True,
             "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}},
        ]},
        "annotations": {"list": [
            {"name": "Config reloads", "enable": True, "datasource": DS, "iconColor": "blue",
             "expr": f"changes(privproxy_config_last_reload_success_timestamp_seconds{{{SEL}}}[2m]) > 0"}]},
        "panels": L.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
