"""PolicyReloader: a file emptied mid-save or stripped of `version` keeps the last good rules and is counted;
the complete file is swapped in later; the disabled-protection gauge follows every swap (issue 17 item 6).
SIGHUP re-reads the rules and the certificates whether or not they look changed, and the process lives on."""

from __future__ import annotations

import asyncio
import os
import signal

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


def test_force_reads_an_edit_the_poll_cannot_see(reloading):
    cfg, shared, reloader = reloading
    st = os.stat(cfg)
    cfg.write_text(GOOD.replace("foo", "bar"))  # the same size, and the mtime put back: the poll sees nothing
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reloader.check() is None
    assert reloader.check(force=True) is True
    assert "F1" in scrubbed(shared, "/p?foo=F1") and "B1" not in scrubbed(shared, "/p?bar=B1")
    assert reloader.check(force=True) is None  # the same rules again: nothing swapped


def test_force_on_a_vanished_file_keeps_the_rules_and_counts(reloading):
    cfg, shared, reloader = reloading
    before = shared.policy
    failures = value(shared, "privproxy_config_reloads_total", {"result": "failure"})
    cfg.unlink()
    assert reloader.check() is None  # a poll says nothing (a ConfigMap key can vanish for a moment)
    assert reloader.check(force=True) is False and shared.policy is before
    assert value(shared, "privproxy_config_reloads_total", {"result": "failure"}) == failures + 1


class Certificates:
    def __init__(self) -> None:
        self.forced: list[bool] = []

    def check(self, force: bool = False) -> list:
        self.forced.append(force)
        if len(self.forced) > 1:
            raise OSError("a surprise")  # logged; the proxy goes on
        return []


def test_sighup_rereads_rules_and_certificates_and_the_process_lives_on(reloading):
    cfg, shared, reloader = reloading
    reloader.certificates = certs = Certificates()
    st = os.stat(cfg)
    cfg.write_text(GOOD.replace("foo", "bar"))
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))

    async def scenario() -> None:
        reloader.load(None)  # the handler is there from the first hook on, before the proxy listens
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if certs.forced:
                break
        os.kill(os.getpid(), signal.SIGHUP)  # again, with the certificates failing this time
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(certs.forced) == 2:
                break

    asyncio.run(scenario())  # a SIGHUP without the handler would have ended pytest here
    assert certs.forced == [True, True]
    assert "B1" not in scrubbed(shared, "/p?bar=B1")
