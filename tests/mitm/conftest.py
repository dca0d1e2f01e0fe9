from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

import privproxy.mitm
from privproxy.metrics import Metrics
from privproxy.mitm.shared import SharedState
from tests.helpers import REPO


def make_flow(path: str = "/", *, peer: str = "127.9.8.7", tls: bool = True, headers=(), host: str = "shop.example"):
    hdrs = http.Headers([(b"host", host.encode())] + [(k.encode(), v.encode()) for k, v in headers])
    f = tflow.tflow(req=tutils.treq(path=path.encode(), headers=hdrs, host="127.0.0.1", port=8080), resp=False)
    f.client_conn.peername = (peer, 5555)
    f.client_conn.timestamp_tls_setup = 946681201 if tls else None
    f.client_conn.tls_version = "TLSv1.3" if tls else None
    return f


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """privproxy's addons under taddons with the shipped filters.yaml and a log dir."""
    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    shared = SharedState(Metrics())
    addons = privproxy.mitm.addons(shared)
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], privproxy_config=str(REPO / "filters.yaml"), privproxy_log_dir=str(tmp_path))
        yield tctx, addons, shared
