"""The status port: metrics, liveness and readiness for load balancers and Kubernetes probes (C15: 000 §3)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from privproxy.status_server import StatusServer


@pytest.fixture
def server():
    registry = CollectorRegistry()
    Counter("privproxy_demo", "demo", registry=registry).inc(3)
    state = {"live": (True, "ok"), "ready": (False, "not serving (starting or shutting down)")}
    s = StatusServer(registry, lambda: state["live"], lambda: state["ready"])
    host, port = s.start("127.0.0.1", 0)
    yield f"http://{host}:{port}", state
    s.stop()


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_metrics_health_and_readiness(server):
    base, state = server
    status, body, headers = get(base + "/metrics")
    assert status == 200 and "privproxy_demo_total 3.0" in body
    assert get(base + "/healthz")[:2] == (200, "ok\n")
    status, body, headers = get(base + "/readyz")
    assert status == 503 and "shutting down" in body and headers["Cache-Control"] == "no-store"
    state["ready"] = (True, "ok")
    assert get(base + "/readyz")[0] == 200
    state["live"] = (False, "event loop stalled for 12 s")
    assert get(base + "/healthz")[:2] == (503, "event loop stalled for 12 s\n")


def test_unknown_paths_are_404_and_no_versions_are_advertised(server):
    base, _ = server
    status, body, headers = get(base + "/admin")
    assert status == 404 and "/readyz" in body
    assert headers["Server"].strip() == "privproxy"
