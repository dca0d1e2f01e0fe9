"""SharedState: one Policy swapped whole (flows under way keep theirs), metrics told, GeoIP (re)opened or counted."""

from __future__ import annotations

import dataclasses

import pytest

from privproxy import client_ip, policy
from privproxy.errors import ConfigError
from privproxy.metrics import Metrics
from privproxy.mitm.shared import SharedState


def value(shared: SharedState, name: str, **labels: str) -> float | None:
    return shared.metrics.registry.get_sample_value(name, labels)


def test_swap_installs_the_policy_with_the_extra_trusted_proxies_and_tells_metrics():
    shared = SharedState(Metrics())
    shared.extra_trusted = client_ip.parse_networks(["10.1.0.0/16"])
    p = policy.default()
    first = shared.swap(p)
    assert shared.policy is first and first.client_ip.trusted_proxies[-1:] == shared.extra_trusted
    assert p.client_ip.trusted_proxies == first.client_ip.trusted_proxies[:-1]  # the loaded Policy is untouched
    assert value(shared, "privproxy_config_info", sha256=p.sha256) == 1
    assert value(shared, "privproxy_requests_total", site="default", scheme="https", outcome="forwarded") == 0
    assert value(shared, "privproxy_config_last_reload_success_timestamp_seconds") > 0


def test_a_missing_geo_database_fails_at_start_and_is_counted_on_reload(tmp_path):
    shared = SharedState(Metrics())
    p = policy.default()
    shared.swap(dataclasses.replace(p, geo=dataclasses.replace(p.geo, database=str(tmp_path / "none.mmdb"))))
    with pytest.raises(ConfigError, match="GeoIP database not found"):
        shared.load_geo(strict=True)
    shared.load_geo(strict=False)  # a reload: the proxy serves on without geography
    assert shared.locator is None
    assert value(shared, "privproxy_geo_database_loads_total", result="failure") == 2


def test_no_database_means_no_locator():
    shared = SharedState()
    shared.swap(policy.default())
    shared.load_geo(strict=True)
    assert shared.locator is None and shared.all_sinks() == []
