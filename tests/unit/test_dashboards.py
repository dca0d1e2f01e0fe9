"""The Grafana dashboard read with Grafana's own types (grafana-foundation-sdk, no Grafana server): every field is
one Grafana knows (nothing is lost on a round trip through the typed model), panels and queries are typed by
their plugins, tables run instant queries, and thresholds are drawn where the alert rules fire."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common, dashboard, prometheus, stat, table, timeseries

from tests.helpers import REPO

DASHBOARDS = REPO / "dashboards"
SHIPPED = DASHBOARDS / "dashboards" / "privproxy.json"
RULES = yaml.safe_load((DASHBOARDS / "alerts" / "privproxy.rules.yml").read_text())

register_default_plugins()
PANEL_OPTIONS = {"timeseries": timeseries.Options, "stat": stat.Options, "table": table.Options}


def generator():
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(SHIPPED.read_text())


@pytest.fixture(scope="module")
def parsed(doc) -> dashboard.Dashboard:
    return dashboard.Dashboard.from_json(doc)


def lost(a, b, path: str = "") -> list[str]:
    """What of `a` is missing or different in `b` (b may add Grafana's defaults)."""
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return [path]
        return [x for k, v in a.items() for x in ([f"{path}.{k}"] if k not in b else lost(v, b[k], f"{path}.{k}"))]
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return [path]
        return [x for i, (u, v) in enumerate(zip(a, b, strict=True)) for x in lost(u, v, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} became {b!r}"]


def test_the_json_is_what_generate_py_writes():
    assert SHIPPED.read_text() == generator().render(), "run: python dashboards/generate.py"


def test_every_field_is_one_grafana_knows(doc, parsed):
    again = json.loads(JSONEncoder().encode(parsed))
    assert lost(doc, again) == []
    assert lost({"panels": [{"bogus": 1}]}, json.loads(JSONEncoder().encode(dashboard.Dashboard.from_json(
        {"panels": [{"type": "stat", "bogus": 1}]})))) != []  # and an unknown one would be seen


def test_panels_and_queries_are_typed_by_their_plugins(parsed):
    panels = [p for p in parsed.panels if isinstance(p, dashboard.Panel)]
    assert len(panels) >= 30 and parsed.schema_version >= 39
    for p in panels:
        assert type(p.options) is PANEL_OPTIONS.get(p.type_val, type(p.options)), p.title
        assert not isinstance(p.options, dict) or p.type_val == "geomap", p.title
        assert isinstance(p.field_config, dashboard.FieldConfigSource), p.title
        for t in p.targets or []:
            assert isinstance(t, prometheus.Dataquery) and not isinstance(t, UnknownDataquery), p.title
            assert t.datasource.uid == "${datasource}" and t.expr, p.title


def test_tables_run_instant_queries(parsed):
    tables = [p for p in parsed.panels if isinstance(p, dashboard.Panel) and p.type_val == "table"]
    assert len(tables) >= 5
    for p in tables:
        for t in p.targets:
            assert t.instant is True and t.range_val is False and t.format_val == prometheus.PromQueryFormat.TABLE, \
                p.title


def test_stats_and_tables_have_thresholds(parsed):
    for p in parsed.panels:
        if isinstance(p, dashboard.Panel) and p.type_val in ("stat", "table"):
            th = p.field_config.defaults.thresholds
            assert isinstance(th, dashboard.ThresholdsConfig) and th.steps and th.steps[0].value is None, p.title


def threshold_values(parsed, title: str) -> list[float]:
    (p,) = [p for p in parsed.panels if isinstance(p, dashboard.Panel) and p.title == title]
    return [s.value for s in p.field_config.defaults.thresholds.steps if s.value is not None]


def alert_expr(name: str) -> str:
    return next(r["expr"] for g in RULES["groups"] for r in g["rules"] if r.get("alert") == name)


def test_the_red_lines_are_where_the_alerts_fire(parsed):
    assert threshold_values(parsed, "5xx share")[-1] == 0.05 and "> 0.05" in alert_expr("PrivproxyHigh5xxShare")
    assert threshold_values(parsed, "Origin latency p50 / p95 / p99") == [1.0]
    assert "histogram_quantile(0.95" in alert_expr("PrivproxyUpstreamSlow") and \
        alert_expr("PrivproxyUpstreamSlow").rstrip().endswith("> 1")
    assert threshold_values(parsed, "Certificates: days left")[0] == 14
    assert "< 14 * 86400" in alert_expr("PrivproxyCertificateExpiringSoon")
    (latency,) = [p for p in parsed.panels if isinstance(p, dashboard.Panel) and p.title.startswith("Origin latency")]
    mode = latency.field_config.defaults.custom.thresholds_style.mode
    assert mode in {m.value for m in common.GraphThresholdsStyleMode} - {"off"}
