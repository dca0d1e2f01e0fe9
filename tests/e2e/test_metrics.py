"""Metrics as operators consume them: promtool, a real Prometheus scraping real proxies with the labels the
Prometheus Operator gives the shipped PodMonitor, the shipped dashboards and alert rules (issues 7 and 20)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.certs import Authority
from tests.helpers import CLIENT_IP, REPO, free_port, request, start_proxy, stop_process, tls_context
from tests.tools import require

DASHBOARDS = REPO / "dashboards"
_spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)
RULES = sorted((DASHBOARDS / "alerts").glob("*.yml"))
CANARIES = ("canary.person@example.com", "CANARYclick77", "090-5555-0199", "GA1.1.424242424.1700000000",
            "canary-member-31337", CLIENT_IP)
METRIC = re.compile(r"\b(privproxy_[a-z0-9_]+|process_[a-z_]+|up)\b")
K8S = REPO / "deploy" / "kubernetes"
NAMESPACE = "shop"
SITE = "privproxy.test"  # the name on the certificate proxy A serves


def scrape(p) -> str:
    host, port = p.metrics
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def traffic(p, ctx=None, host: str = "localhost") -> None:
    ctx = ctx or tls_context(p.ca)
    request(p.port, "/p?gclid=CANARYclick77&email=canary.person%40example.com&q=watch", tls=ctx, host=host,
            headers={"Cookie": "_ga=GA1.1.424242424.1700000000", "Referer": "https://x.example/?tel=090-5555-0199"})
    request(p.port, "/account?uid=canary-member-31337", tls=ctx, host=host,
            headers={"X-Forwarded-For": "203.0.113.77"})
    request(p.port, "/plain?x=1", host=host)  # plain HTTP: redirected
    request(p.port, "/health/clinic", tls=ctx, host=host)


# --- The Prometheus Operator's scrape configuration for the shipped PodMonitor ------------------------------------
# The relabelling prometheus-operator generates for a PodMonitor (pkg/prometheus/promcfg.go,
# generatePodMonitorConfig), for static targets that carry the __meta_kubernetes_* labels Kubernetes service
# discovery would give a pod of the shipped Deployment. Only the fields the shipped PodMonitor can use.

def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _snake(relabeling: dict) -> dict:
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in relabeling.items()}


def operator_scrape_config(targets: list[tuple[str, str]], interval: str = "1s") -> dict:
    """The scrape job the operator makes of deploy/kubernetes/podmonitor.yaml in namespace NAMESPACE, over
    (address, pod name) targets labelled as pods of deploy/kubernetes/deployment.yaml."""
    pm = yaml.safe_load((K8S / "podmonitor.yaml").read_text())
    pod_labels = yaml.safe_load((K8S / "deployment.yaml").read_text())["spec"]["template"]["metadata"]["labels"]
    spec, name = pm["spec"], pm["metadata"]["name"]
    (ep,) = spec["podMetricsEndpoints"]
    relabel: list[dict] = [
        {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
    ]
    for k, v in sorted(spec["selector"]["matchLabels"].items()):
        relabel.append({"action": "keep", "regex": f"({v});true", "source_labels": [
            f"__meta_kubernetes_pod_label_{_sanitize(k)}", f"__meta_kubernetes_pod_labelpresent_{_sanitize(k)}"]})
    relabel.append({"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                    "regex": ep["port"]})
    relabel += [{"source_labels": [f"__meta_kubernetes_{src}"], "target_label": dst}
                for src, dst in (("namespace", "namespace"), ("pod_container_name", "container"),
                                 ("pod_name", "pod"))]
    relabel.append({"target_label": "job", "replacement": f"{NAMESPACE}/{name}"})
    if spec.get("jobLabel"):
        relabel.append({"source_labels": [f"__meta_kubernetes_pod_label_{_sanitize(spec['jobLabel'])}"],
                        "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
    relabel.append({"target_label": "endpoint", "replacement": ep["port"]})
    relabel += [_snake(r) for r in ep.get("relabelings", [])]
    meta = {f"__meta_kubernetes_pod_label_{_sanitize(k)}": v for k, v in pod_labels.items()}
    meta |= {f"__meta_kubernetes_pod_labelpresent_{_sanitize(k)}": "true" for k in pod_labels}
    return {
        "job_name": f"podMonitor/{NAMESPACE}/{name}/0", "honor_labels": False, "scrape_interval": interval,
        "metrics_path": ep.get("path", "/metrics"), "relabel_configs": relabel,
        "static_configs": [{"targets": [address], "labels": {
            **meta, "__meta_kubernetes_namespace": NAMESPACE, "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_container_name": "privproxy", "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_container_port_name": ep["port"]}} for address, pod in targets],
    }


class SlowOrigin:
    """An origin that answers 200 at once, and after 1.3 s on /slow (past the upstream latency alert's 1 s)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/slow"):
                    time.sleep(1.3)
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_exposition_passes_promtool_and_carries_no_identifiers(tmp_path, origin):
    promtool = require("promtool", "prometheus")
    p = start_proxy(tmp_path / "p", origin.url, metrics=True)
    try:
        traffic(p)
        time.sleep(0.2)
        text = scrape(p)
    finally:
        p.stop()
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for canary in CANARIES:
        assert canary not in text, canary
    assert 'privproxy_https_redirects_total{site="default"} 1.0' in text
    assert re.search(r'privproxy_fields_scrubbed_total\{.*rule="click-ids".*\} 1\.0', text)
    # the edge: who answered, the origin's latency, requests in flight, the key in use, the process
    assert 'privproxy_responses_total{class="2xx",source="origin"} 3.0' in text
    assert 'privproxy_responses_total{class="3xx",source="proxy"} 1.0' in text
    assert 'privproxy_upstream_latency_seconds_count{source="origin"} 3.0' in text
    assert 'privproxy_upstream_latency_seconds_bucket{le="60.0",source="origin"} 3.0' in text  # ends at the timeout
    assert "privproxy_requests_in_flight 0.0" in text
    assert 'privproxy_pseudonym_key_mode{mode="secret"} 1.0' in text
    assert re.search(r"^process_cpu_seconds_total \d", text, re.M) and "process_open_fds" in text


def test_alert_rules_pass_promtool():
    promtool = require("promtool", "prometheus")
    assert RULES, "dashboards/alerts/*.yml"
    r = subprocess.run([promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_json_is_generated_and_provisionable():
    shipped = DASHBOARDS / "dashboards" / "privproxy.json"
    assert shipped.read_text() == generate.render(), "run: python dashboards/generate.py"
    dash = json.loads(shipped.read_text())
    assert dash["schemaVersion"] >= 39 and dash["uid"]
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dash["templating"]["list"])
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", panel["title"]
    provider = (DASHBOARDS / "dashboards" / "provider.yaml").read_text()
    assert "path: /etc/grafana/provisioning/dashboards" in provider
    assert "type: prometheus" in (DASHBOARDS / "datasources" / "prometheus.yaml").read_text()


def dashboard_exprs() -> list[str]:
    out = []
    for f in sorted(DASHBOARDS.rglob("*.json")):
        doc = json.loads(f.read_text())

        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == "expr" and isinstance(v, str):
                        out.append(v)
                    else:
                        walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)

        walk(doc)
    return out


def grafana_to_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s")
            .replace('"$instance"', '".*"'))


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}" if params else self.base + path
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())


@pytest.fixture
def prometheus(tmp_path):
    """Two proxies scraped as the Prometheus Operator scrapes the shipped PodMonitor's pods (job
    `<namespace>/privproxy`, namespace, pod, container, endpoint labels):
    A (pod privproxy-a) serves a certificate that expires in 10 days in front of an origin that is slow on /slow;
    B (pod privproxy-b) is in report-only mode, has no pseudonymization secret, its origin is down, and it serves a
    tracker script (beacons.scripts, never fetched)."""
    exe = require("prometheus", "prometheus")
    slow = SlowOrigin()
    ca = Authority()
    cert = tmp_path / "site.pem"
    ca.issue(SITE, days=10).write(cert)
    report_only = tmp_path / "report-only.yaml"
    report_only.write_text("version: 1\nreport_only: true\ndisable: [report-only]\n"  # a script: its series exist
                           "beacons: {scripts: {/js/script.js: 'https://127.0.0.1:9/js/script.js'}}\n")
    a = start_proxy(tmp_path / "a", slow.url, "--cert", str(cert), metrics=True)
    b = start_proxy(tmp_path / "b", f"http://127.0.0.1:{free_port()}", config=report_only, metrics=True,
                    env={"PRIVPROXY_SECRET": ""})
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(f) for f in RULES],
        "scrape_configs": [operator_scrape_config([(f"{a.metrics[0]}:{a.metrics[1]}", "privproxy-a"),
                                                   (f"{b.metrics[0]}:{b.metrics[1]}", "privproxy-b")])],
    }))
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    prom = Prom(port)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                targets = prom.get("/api/v1/targets")["data"]["activeTargets"]
                if len(targets) == 2 and all(t["health"] == "up" for t in targets):
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        else:
            raise AssertionError("Prometheus never scraped privproxy:\n" + (tmp_path / "prometheus.log").read_text())
        yield a, b, ca.root_pem(tmp_path / "root.pem"), prom
    finally:
        stop_process(proc, 15)
        a.stop()
        b.stop()
        slow.close()


def rule_exprs() -> list[str]:
    from ruamel.yaml import YAML

    out = []
    for f in RULES:
        for group in YAML(typ="safe").load(f.read_text())["groups"]:
            out.extend(r["expr"] for r in group["rules"])
    return out


def wait_for(prom: Prom, query: str, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prom.get("/api/v1/query", query=query)["data"]["result"]
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no result for {query}")


def alerts(prom: Prom, state: str = "pending") -> list[dict]:
    return [a for a in prom.get("/api/v1/alerts")["data"]["alerts"] if a["state"] in (state, "firing")]


def test_real_prometheus_evaluates_every_dashboard_and_alert_query(prometheus):
    a, _, root, prom = prometheus
    traffic(a, tls_context(root), host=SITE)
    wait_for(prom, f'privproxy_https_redirects_total{{job="{NAMESPACE}/privproxy", pod="privproxy-a"}} > 0')
    time.sleep(2.5)  # two more scrapes, so rate() over the traffic has two points
    known = set(prom.get("/api/v1/label/__name__/values")["data"])
    exprs = [grafana_to_promql(e) for e in dashboard_exprs()] + rule_exprs()
    assert len(exprs) >= 30
    for expr in exprs:
        got = prom.get("/api/v1/query", query=expr)
        assert got["status"] == "success", (expr, got)
        for name in set(METRIC.findall(expr)):
            assert name in known, f"{name} (in {expr}) does not exist in Prometheus"
    # Panels show real data, not just valid syntax.
    share = wait_for(prom, grafana_to_promql(next(e for e in dashboard_exprs() if 'scheme=\"https\"' in e
                                                  or 'scheme="https"' in e)))
    assert 0 < float(share[0]["value"][1]) < 1
    by_rule = {r["metric"]["rule"] for r in wait_for(
        prom, 'sum by (rule) (increase(privproxy_fields_scrubbed_total{mode="enforce"}[5m])) > 0')}
    assert {"click-ids", "contact-params", "visitor-ids", "tracking-cookies"} <= by_rule
    days = wait_for(prom, grafana_to_promql(next(e for e in dashboard_exprs() if "certificate_expiry" in e)))
    assert [(d["metric"]["certificate"], round(float(d["value"][1]))) for d in days] == [(SITE, 10)]
    # Every alert rule was loaded and evaluates without error.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rules = [r for g in prom.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") and not r["lastEvaluation"].startswith("0001")
                         for r in rules):
            break
        time.sleep(0.5)
    assert len(rules) == len(rule_exprs())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = {x["labels"]["alertname"] for x in alerts(prom)}
    assert "PrivproxyScrapeMissing" not in firing and "PrivproxyConfigReloadFailed" not in firing


def wait_for_alert(prom: Prom, name: str, timeout: float = 30, **labels: str) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for x in alerts(prom):
            if x["labels"]["alertname"] == name and labels.items() <= x["labels"].items():
                return x
        time.sleep(0.5)
    raise AssertionError(f"{name} {labels} never became pending; pending: "
                         f"{[(x['labels']['alertname'], x['labels'].get('pod')) for x in alerts(prom)]}")


def test_the_alerts_fire_under_the_podmonitors_labels(prometheus):
    """Each new alert becomes pending for the instance that deserves it, and only for it, with the job, namespace
    and pod labels the operator's relabelling gives (its `for:` then decides when it fires)."""
    a, b, root, prom = prometheus
    site = tls_context(root)
    for i in range(12):
        request(a.port, f"/fast/{i}", tls=site, host=SITE)
    slow = [threading.Thread(target=request, args=(a.port, f"/slow/{i}"), kwargs={"tls": site, "host": SITE})
            for i in range(3)]
    for t in slow:
        t.start()
    down = tls_context(b.ca)
    for i in range(60):
        assert request(b.port, f"/p/{i}", tls=down).status == 502  # B's origin is down: privproxy answers 502
    for t in slow:
        t.join(10)
    job = f"{NAMESPACE}/privproxy"
    cert = wait_for_alert(prom, "PrivproxyCertificateExpiringSoon", certificate=SITE, pod="privproxy-a")
    assert cert["labels"]["job"] == job and cert["labels"]["namespace"] == NAMESPACE
    assert cert["annotations"]["runbook_url"] == "README.md#privproxycertificateexpiringsoon"
    a_instance = cert["labels"]["instance"]
    wait_for_alert(prom, "PrivproxyUpstreamSlow", instance=a_instance)
    b_5xx = wait_for_alert(prom, "PrivproxyHigh5xxShare", source="proxy")
    b_instance = b_5xx["labels"]["instance"]
    assert b_instance != a_instance
    wait_for_alert(prom, "PrivproxyReportOnlyMode", pod="privproxy-b", job=job)
    wait_for_alert(prom, "PrivproxyPseudonymKeyEphemeral", pod="privproxy-b", job=job)
    pending = {(x["labels"]["alertname"], x["labels"]["instance"]) for x in alerts(prom) if "instance" in x["labels"]}
    for name in ("PrivproxyReportOnlyMode", "PrivproxyPseudonymKeyEphemeral", "PrivproxyHigh5xxShare"):
        assert (name, a_instance) not in pending, name
    for name in ("PrivproxyCertificateExpiringSoon", "PrivproxyUpstreamSlow", "PrivproxyScrapeMissing"):
        assert (name, b_instance) not in pending, name
    b.stop()  # gone: its target answers no more
    gone = wait_for_alert(prom, "PrivproxyScrapeMissing", pod="privproxy-b")
    assert gone["labels"]["job"] == job and gone["labels"]["severity"] == "critical"
    assert ("PrivproxyScrapeMissing", a_instance) not in {
        (x["labels"]["alertname"], x["labels"].get("instance")) for x in alerts(prom)}


def test_the_alerts_fire_after_their_for_under_operator_labels(tmp_path):
    """`promtool test rules` on series labelled as the Prometheus Operator labels the shipped PodMonitor's targets:
    each new alert fires when its `for:` has passed, not before, and only for the series that deserve it."""
    promtool = require("promtool", "prometheus")
    doc = yaml.safe_load(RULES[0].read_text())
    for group in doc["groups"]:  # annotations are templates checked elsewhere; promtool would compare them
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(doc))
    job = f"{NAMESPACE}/privproxy"

    def target(pod: str, ip: str) -> dict[str, str]:
        return {"job": job, "namespace": NAMESPACE, "pod": pod, "container": "privproxy", "endpoint": "metrics",
                "instance": f"{ip}:9100"}

    a, b = target("privproxy-a", "192.0.2.10"), target("privproxy-b", "192.0.2.11")

    def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
        return {"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
                "values": values}

    def alert(name: str, at: str, *expected: dict[str, str]) -> dict:
        return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": e} for e in expected]}

    day = 86400
    tests = [
        {"interval": "1m", "input_series": [
            series("privproxy_certificate_expiry_timestamp_seconds", {**a, "certificate": "www.example.test"},
                   f"{10 * day}x400"),
            series("privproxy_certificate_expiry_timestamp_seconds", {**b, "certificate": "www.example.test"},
                   f"{30 * day}x400"),
            series("privproxy_protection_disabled", {**b, "protection": "report-only"}, "1x400"),
            series("privproxy_protection_disabled", {**a, "protection": "report-only"}, "0x400"),
            series("privproxy_pseudonym_key_mode", {**b, "mode": "ephemeral"}, "1x400"),
            series("privproxy_pseudonym_key_mode", {**a, "mode": "ephemeral"}, "0x400"),
        ], "alert_rule_test": [
            alert("PrivproxyCertificateExpiringSoon", "59m"),
            alert("PrivproxyCertificateExpiringSoon", "61m",
                  {**a, "certificate": "www.example.test", "severity": "warning"}),
            alert("PrivproxyReportOnlyMode", "359m"),
            alert("PrivproxyReportOnlyMode", "361m", {**b, "protection": "report-only", "severity": "critical"}),
            alert("PrivproxyPseudonymKeyEphemeral", "14m"),
            alert("PrivproxyPseudonymKeyEphemeral", "16m", {**b, "mode": "ephemeral", "severity": "warning"}),
        ]},
        {"interval": "1m", "input_series": [
            series("up", a, "1x40"),
            series("up", b, "1x10 0x30"),
            series("privproxy_build_info", {**a, "version": "0.1.0"}, "1x40"),
            series("privproxy_build_info", {**b, "version": "0.1.0"}, "1x10 _x30"),  # gone with its target
            series("privproxy_responses_total", {**a, "source": "origin", "class": "2xx"}, "0+600x40"),
            series("privproxy_responses_total", {**a, "source": "proxy", "class": "5xx"}, "0+60x40"),
            series("privproxy_responses_total", {**b, "source": "origin", "class": "2xx"}, "0+600x40"),
            series("privproxy_responses_total", {**b, "source": "origin", "class": "5xx"}, "0+6x40"),
            series("privproxy_upstream_latency_seconds_bucket", {**a, "source": "origin", "le": "1.0"}, "0+50x40"),
            series("privproxy_upstream_latency_seconds_bucket", {**a, "source": "origin", "le": "2.5"}, "0+100x40"),
            series("privproxy_upstream_latency_seconds_bucket", {**a, "source": "origin", "le": "+Inf"}, "0+100x40"),
            series("privproxy_upstream_latency_seconds_bucket", {**b, "source": "origin", "le": "1.0"}, "0+99x40"),
            series("privproxy_upstream_latency_seconds_bucket", {**b, "source": "origin", "le": "2.5"}, "0+100x40"),
            series("privproxy_upstream_latency_seconds_bucket", {**b, "source": "origin", "le": "+Inf"}, "0+100x40"),
            series("privproxy_config_info", {**a, "sha256": "aaa"}, "1x40"),
            series("privproxy_config_info", {**b, "sha256": "bbb"}, "1x40"),
        ], "alert_rule_test": [
            alert("PrivproxyScrapeMissing", "14m"),
            alert("PrivproxyScrapeMissing", "17m", {**b, "severity": "critical"}),
            alert("PrivproxyHigh5xxShare", "8m"),  # 9% of A's answers for 10 minutes, B's 1% never
            alert("PrivproxyHigh5xxShare", "15m",
                  {"instance": a["instance"], "source": "proxy", "severity": "warning"}),
            alert("PrivproxyUpstreamSlow", "15m", {"instance": a["instance"], "severity": "warning"}),
            alert("PrivproxyConfigMismatch", "15m", {"job": job, "namespace": NAMESPACE, "severity": "warning"}),
        ]},
        {"interval": "1m", "input_series": [  # the gateway: A's posthog collector fails a fifth of the time
            series("privproxy_vendor_failures_total", {**a, "vendor": "posthog", "reason": "timeout"}, "0+20x30"),
            series("privproxy_vendor_forwards_total", {**a, "vendor": "posthog", "class": "2xx"}, "0+80x30"),
            series("privproxy_vendor_failures_total", {**b, "vendor": "posthog", "reason": "timeout"}, "0+1x30"),
            series("privproxy_vendor_forwards_total", {**b, "vendor": "posthog", "class": "2xx"}, "0+99x30"),
            series("privproxy_vendor_failures_total", {**b, "vendor": "ga4", "reason": "connect"}, "0+5x30"),  # down
        ], "alert_rule_test": [
            alert("PrivproxyVendorFailing", "9m"),  # pending from the first rate (1m), for 10m
            alert("PrivproxyVendorFailing", "12m",
                  {"instance": a["instance"], "vendor": "posthog", "severity": "warning"},
                  {"instance": b["instance"], "vendor": "ga4", "severity": "warning"}),
        ]},
    ]
    spec = tmp_path / "rules.test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}))
    r = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
