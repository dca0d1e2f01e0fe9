"""Options: config errors become OptionsError; mitmproxy's debugging defaults are hardened (C15)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import block, dumper, proxyserver
from mitmproxy.test import taddons

import privproxy.mitm
from privproxy.mitm.runtime import Runtime
from tests.helpers import REPO


def test_bad_config_is_an_options_error_with_position(tmp_path):
    bad = tmp_path / "f.yaml"
    bad.write_text("version: 1\nrulez: []\n")
    rt = Runtime()
    addons = privproxy.mitm.addons(rt)
    with taddons.context(*addons) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"f\.yaml:2:1: unknown key `rulez`"):
            tctx.configure(addons[0], privproxy_config=str(bad))
    assert rt.metrics.registry.get_sample_value("privproxy_config_reloads_total", {"result": "failure"}) == 1


def test_public_proxy_hardening():
    rt = Runtime()
    addons = privproxy.mitm.addons(rt)
    with taddons.context(block.Block(), dumper.Dumper(), proxyserver.Proxyserver(), *addons) as tctx:
        tctx.options.update(block_global=True, flow_detail=2)
        tctx.configure(addons[0], privproxy_config=str(REPO / "filters.yaml"))
        assert tctx.options.block_global is False  # else public visitors are refused
        assert tctx.options.flow_detail == 0  # the dumper would print client addresses
        assert tctx.options.keep_host_header is True


def test_script_shim_loads():
    with taddons.context() as tctx:
        module = tctx.script(str(REPO / "addons" / "privproxy_mitmdump.py"))
        (one,) = module.addons  # a single addon: mitmproxy's per-addon dispatch is paid once
        names = [type(a).__name__ for a in one.components]
        assert names == ["Options", "PrivacyFilter", "EnforceHttps", "AccessLog", "MetricsExporter",
                         "PolicyReloader", "UpstreamTimeout"]


def test_bad_trusted_proxy_option():
    addons = privproxy.mitm.addons(Runtime())
    with taddons.context(*addons) as tctx:
        with pytest.raises(exceptions.OptionsError, match="not a CIDR"):
            tctx.configure(addons[0], privproxy_trusted_proxies=["10.0.0.0/99"])
