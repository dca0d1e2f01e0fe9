"""A mitmdump flow dump read as explain's requests, for `explain --flows` and `tune --flows` (issue 21 item 6)."""

from __future__ import annotations

import json
import subprocess

from mitmproxy import http, io
from mitmproxy.test import tflow, tutils

from privproxy.mitm import flowfile
from tests.helpers import REPO, privproxy_exe
from tests.mitm.conftest import make_flow


def _dump(path, n: int = 8) -> None:
    with open(path, "wb") as f:
        w = io.FlowWriter(f)
        for i in range(n):
            flow = make_flow(f"/p?wid=W{i}q8Zt3kP2x9&lang=ja",
                             headers=[("cookie", f"cart_uuid=9f{i}e2c41d7a3b5; theme=dark")])
            flow.response = tutils.tresp(headers=http.Headers([(b"set-cookie", b"seen=1")]))
            w.add(flow)
        w.add(tflow.ttcpflow())  # not HTTP: skipped


def test_each_http_flow_as_the_visitor_sent_it(tmp_path):
    path = tmp_path / "flows"
    _dump(path, 2)
    got = list(flowfile.samples(str(path)))
    assert [s.url for s in got] == ["https://shop.example/p?wid=W0q8Zt3kP2x9&lang=ja",
                                    "https://shop.example/p?wid=W1q8Zt3kP2x9&lang=ja"]
    assert got[0].header("cookie") == ["cart_uuid=9f0e2c41d7a3b5; theme=dark"] and got[0].set_cookies == ("seen=1",)


def test_tune_and_explain_read_flow_dumps(tmp_path):
    path = tmp_path / "flows"
    _dump(path)
    r = subprocess.run([*privproxy_exe(), "tune", "--config", str(REPO / "filters.yaml"), "--flows", str(path),
                        "--json"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    fields = {(f["scope"], f["name"]): f for f in json.loads(r.stdout)["fields"]}
    assert fields[("query", "wid")]["suggested"] == "hash" and fields[("query", "wid")]["seen"] == 8
    assert fields[("cookie", "cart_uuid")]["suggested"] == "hash"
    assert fields[("query", "lang")]["suggested"] == "keep"
    assert b"q8Zt3kP2x9" not in r.stdout and b"e2c41d7a3b5" not in r.stdout
    r = subprocess.run([*privproxy_exe(), "explain", "--config", str(REPO / "filters.yaml"), "--flows", str(path)],
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count(b"GET https://shop.example/p?wid=") == 8
