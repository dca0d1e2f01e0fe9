"""Options: config errors become OptionsError; mitmproxy's debugging defaults are hardened (C15)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import block, dumper, proxyserver, tlsconfig
from mitmproxy.test import taddons

import privproxy.mitm
from privproxy.mitm.shared import SharedState
from tests.helpers import REPO


def test_bad_config_is_an_options_error_with_position(tmp_path):
    bad = tmp_path / "f.yaml"
    bad.write_text("version: 1\nrulez: []\n")
    shared = SharedState()
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"f\.yaml:2:1: unknown key `rulez`"):
            tctx.configure(addons[0], privproxy_config=str(bad))
    assert shared.metrics.registry.get_sample_value("privproxy_config_reloads_total", {"result": "failure"}) == 1


def test_public_proxy_hardening():
    shared = SharedState()
    addons = privproxy.mitm.addons(shared)
    with taddons.context(block.Block(), dumper.Dumper(), proxyserver.Proxyserver(), tlsconfig.TlsConfig(),
                         *addons) as tctx:
        tctx.options.update(block_global=True, flow_detail=2)
        tctx.configure(addons[0], privproxy_config=str(REPO / "filters.yaml"))
        assert tctx.options.block_global is False  # else public visitors are refused
        assert tctx.options.flow_detail == 0  # the dumper would print client addresses
        assert tctx.options.keep_host_header is True
        assert tctx.options.rawtcp is False  # no raw TCP relay, for odd first lines or after an origin's 101
        assert tctx.options.ciphers_client == "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


def test_request_head_limits_reach_the_http_layer():
    from mitmproxy.proxy.layers import http as http_layer

    from privproxy.mitm import internals

    shared = SharedState()
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        assert http_layer.Http1Server is internals.GuardedHttp1Server  # installed when the addons load
        tctx.configure(addons[0], privproxy_max_request_head=8192, privproxy_request_head_timeout=5)
        assert (addons[0].layer.max_head, addons[0].layer.head_timeout) == (8192, 5.0)
        with pytest.raises(exceptions.OptionsError, match="privproxy_max_request_head"):
            tctx.configure(addons[0], privproxy_max_request_head=10)
        with pytest.raises(exceptions.OptionsError, match="privproxy_request_head_timeout"):
            tctx.configure(addons[0], privproxy_request_head_timeout=-1)


def test_the_http_layer_gets_hsts_and_the_body_limit_from_each_flows_rules(tmp_path, monkeypatch):
    from tests.mitm.conftest import make_flow

    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    shared = SharedState()
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(REPO / "filters.yaml"))
        layer = addons[0].layer
        assert layer.hsts(None, tls=True) == shared.policy.https.hsts and layer.hsts(None, tls=False) is None
        f = make_flow("/", tls=False)
        addons[1].requestheaders(f)
        assert layer.hsts(f, tls=False) is None  # plain HTTP: never (RFC 6797 §7.2)
        g = make_flow("/")
        addons[1].requestheaders(g)
        assert layer.hsts(g, tls=True) == shared.policy.https.hsts
        assert layer.body_limit(g) == shared.policy.beacons.limits.max_body


def test_script_shim_loads():
    with taddons.context() as tctx:
        module = tctx.script(str(REPO / "addons" / "privproxy_mitmdump.py"))
        (one,) = module.addons  # a single addon: mitmproxy's per-addon dispatch is paid once
        names = [type(a).__name__ for a in one.components]
        assert names == [type(a).__name__ for a in privproxy.mitm.addons()]  # the chain `run` builds, in its order
        assert names[:2] == ["Options", "PrivacyFilter"] and names[-1] == "UpstreamTimeout"


def test_bad_trusted_proxy_option():
    addons = privproxy.mitm.addons(SharedState())
    with taddons.context(*addons) as tctx:
        with pytest.raises(exceptions.OptionsError, match="not a CIDR"):
            tctx.configure(addons[0], privproxy_trusted_proxies=["10.0.0.0/99"])
