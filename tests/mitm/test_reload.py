"""PolicyReloader: a file emptied mid-save or stripped of `version` keeps the last good rules and is counted;
the complete file is swapped in later; the disabled-protection gauge follows every swap (issue 17 item 6)."""

from __future__ import annotations

import os

import pytest
from mitmproxy.test import taddons

import privproxy.mitm
from privproxy import protections
from privproxy.metrics import Metrics
from privproxy.mitm.reload import PolicyReloader
from privproxy.mitm.shared import SharedState

GOOD = "version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [foo]}\n"


def bump(path, text: str, n: int) -> None:
    """Write and move the mtime on, as a later save would (the poll compares mtime, size and inode)."""
    path.write_text(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + n * 1_000_000_000))


@pytest.fixture
def reloading(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(GOOD)
    shared = SharedState(Metrics())
    addons = privproxy.mitm.addons(shared)
    reloader = next(a for a in addons if isinstance(a, PolicyReloader))
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(cfg))
        reloader._seen = reloader._stamp()
        yield cfg, shared, reloader


def value(shared: SharedState, name: str, labels: dict[str, str]) -> float | None:
    return shared.metrics.registry.get_sample_value(name, labels)


def scrubbed(shared: SharedState, url: str) -> str:
    assert shared.policy is not None
    return shared.policy.scrubber.url(url, "query", [])


@pytest.mark.parametrize("broken", ["", "# truncated\n", "rules: []\n"])
def test_an_emptied_or_versionless_file_keeps_the_previous_rules(reloading, broken):
    cfg, shared, reloader = reloading
    before = shared.policy
    failures = value(shared, "privproxy_config_reloads_total", {"result": "failure"})
    bump(cfg, broken, 1)  # a truncating editor's first write, or an empty ConfigMap key
    assert reloader.check() is False
    assert shared.policy is before
    assert value(shared, "privproxy_config_reloads_total", {"result": "failure"}) == failures + 1
    url = scrubbed(shared, "/p?gclid=G1&uid=U1&foo=F1")
    assert "G1" not in url and "U1" not in url and "F1" not in url
    bump(cfg, GOOD.replace("foo", "bar"), 2)  # the editor's complete write
    assert reloader.check() is True
    assert "F1" in scrubbed(shared, "/p?foo=F1") and "B1" not in scrubbed(shared, "/p?bar=B1")
    assert "G1" not in scrubbed(shared, "/p?gclid=G1")  # the shipped rules still apply


def test_the_disabled_gauge_follows_each_swap(reloading):
    cfg, shared, reloader = reloading
    label = "privproxy_protection_disabled"
    assert all(value(shared, label, {"protection": pid}) == 0 for pid in protections.IDS)
    bump(cfg, "version: 1\ndisable: [click-ids, unknown-fields]\nunknown_fields: keep\n", 1)
    assert reloader.check() is True
    assert shared.policy.disabled == ("click-ids", "unknown-fields")
    assert value(shared, label, {"protection": "click-ids"}) == 1
    assert value(shared, label, {"protection": "unknown-fields"}) == 1
    assert value(shared, label, {"protection": "hsts"}) == 0
    assert "G1" in scrubbed(shared, "/p?gclid=G1")  # the statement takes effect
    bump(cfg, "version: 1\nunknown_fields: keep\n", 2)  # the same weakening without the statement: refused
    assert reloader.check() is False and shared.policy.disabled == ("click-ids", "unknown-fields")
    bump(cfg, GOOD, 3)
    assert reloader.check() is True
    assert value(shared, label, {"protection": "click-ids"}) == 0
    assert value(shared, label, {"protection": "unknown-fields"}) == 0
