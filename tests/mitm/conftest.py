from __future__ import annotations

import contextlib
import gc

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

import privproxy.mitm
from privproxy.mitm import internals
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


@pytest.fixture
def unchecked_messages(monkeypatch):
    """mitmproxy's messages without its debug type check, as privproxy run has them (internals.skip_message_typecheck),
    restored after: the check keeps frames, and so the flow, in the tracebacks it catches."""
    monkeypatch.setattr(http.MessageData, "__post_init__", http.MessageData.__post_init__)
    internals.skip_message_typecheck()


@contextlib.contextmanager
def collector_off():
    """Python's cyclic collector off: only what reference counting frees is freed. Yields the list that
    `gc.collect()` fills with the cyclic garbage it finds inside (gc.DEBUG_SAVEALL), emptied at the end."""
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
