"""Metrics as operators consume them: promtool, a real Prometheus, the shipped dashboards and alert rules (issue 7)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.helpers import CLIENT_IP, REPO, free_port, request, start_proxy, tls_context
from tests.tools import require

DASHBOARDS = REPO / "dashboards"
_spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)
RULES = sorted((DASHBOARDS / "alerts").glob("*.yml"))
CANARIES = ("canary.person@example.com", "CANARYclick77", "090-5555-0199", "GA1.1.424242424.1700000000",
            "canary-member-31337", CLIENT_IP)
METRIC = re.compile(r"\b(privproxy_[a-z0-9_]+|up)\b")


def scrape(p) -> str:
    host, port = p.metrics
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def traffic(p) -> None:
    ctx = tls_context(p.ca)
    request(p.port, "/p?gclid=CANARYclick77&email=canary.person%40example.com&q=watch", tls=ctx,
            headers={"Cookie": "_ga=GA1.1.424242424.1700000000", "Referer": "https://x.example/?tel=090-5555-0199"})
    request(p.port, "/account?uid=canary-member-31337", tls=ctx, headers={"X-Forwarded-For": "203.0.113.77"})
    request(p.port, "/plain?x=1")  # plain HTTP: redirected
    request(p.port, "/health/clinic", tls=ctx)


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
def prometheus(tmp_path, origin):
    exe = require("prometheus", "prometheus")
    p = start_proxy(tmp_path / "p", origin.url, metrics=True)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(f) for f in RULES],
        "scrape_configs": [{"job_name": "privproxy",
                            "static_configs": [{"targets": [f"{p.metrics[0]}:{p.metrics[1]}"]}]}],
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
                if targets and targets[0]["health"] == "up":
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        else:
            raise AssertionError("Prometheus never scraped privproxy:\n" + (tmp_path / "prometheus.log").read_text())
        yield p, prom
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        p.stop()


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


def test_real_prometheus_evaluates_every_dashboard_and_alert_query(prometheus):
    p, prom = prometheus
    traffic(p)
    wait_for(prom, 'privproxy_https_redirects_total{job="privproxy"} > 0')
    time.sleep(2.5)  # two more scrapes, so rate() over the traffic has two points
    known = set(prom.get("/api/v1/label/__name__/values")["data"])
    exprs = [grafana_to_promql(e) for e in dashboard_exprs()] + rule_exprs()
    assert len(exprs) >= 20
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
    firing = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["data"]["alerts"]}
    assert "PrivproxyScrapeMissing" not in firing and "PrivproxyConfigReloadFailed" not in firing

