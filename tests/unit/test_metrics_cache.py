"""Metric children cached in a dict behave exactly like prometheus_client's own (C15: bounded label sets)."""

from __future__ import annotations

from prometheus_client import generate_latest

from privproxy.metrics import Labelled, Metrics


def test_cached_children_are_the_library_children_and_the_cache_is_bounded(monkeypatch):
    m = Metrics()
    assert isinstance(m.requests, Labelled)
    a = m.requests.labels("shop", "https", "forwarded")
    assert a is m.requests.labels("shop", "https", "forwarded") is m.requests.metric.labels("shop", "https",
                                                                                              "forwarded")
    a.inc(3)
    text = generate_latest(m.registry).decode()
    assert 'privproxy_requests_total{outcome="forwarded",scheme="https",site="shop"} 3.0' in text
    monkeypatch.setattr(Labelled, "MAX_CHILDREN", 2)
    for i in range(5):
        m.countries.labels(f"C{i}").inc()
    assert len(m.countries._children) == 2  # past the bound, children are still counted, just not cached
    assert 'privproxy_requests_by_country_total{country="C4"} 1.0' in generate_latest(m.registry).decode()
