"""The benchmarks keep running: each completes on a tiny budget with no failed request and prints its figures.
(No timing is asserted here; the figures are read from a full run, docs/performance.md.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.tools import require


def test_proxy_benchmark_runs_all_the_proxies_and_the_floor_without_errors(tmp_path):
    require("nginx", "nginx")
    require("wrk", "wrk")
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "proxy_vs_mitmdump.py"), "--seconds", "1",
                        "--warmup", "1", "--rounds", "1", "--connections", "4", "--json", str(out), "--floor"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ratio privproxy / stock mitmdump:" in r.stdout and "errors:" not in r.stdout, r.stdout
    doc = json.loads(out.read_text())
    assert "bare mitmproxy Master / stock mitmdump per round:" in r.stdout, r.stdout
    for kind in ("mitmdump", "mitmdump-q", "privproxy", "bare-master"):
        (only,) = doc["rounds"][kind]
        assert only["requests"] > 0 and only["non_2xx"] == 0, (kind, only)
    assert doc["rounds"]["privproxy"][0]["filter_ms_per_request"] > 0  # privproxy's own metric was read


@pytest.mark.parametrize("traffic", ["mixed", "beacons"])
def test_addon_chain_benchmark_measures_the_filtering_path(traffic):
    # it refuses to report a figure if any request took the fail-closed path instead of the filters
    r = subprocess.run([sys.executable, str(REPO / "bench" / "addon_chain.py"), "--requests", "300",
                        "--repeat", "1", "--traffic", traffic], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"us CPU per request (300 requests of the {traffic} traffic" in r.stdout
    assert "never awaited" not in r.stderr, r.stderr


def test_addon_chain_counts_instructions_under_callgrind():
    # The noise-free comparison of two versions (valgrind counts instructions, not seconds): the count comes out of
    # the measured loop only, and a run whose requests took the fail-closed path reports nothing.
    require("valgrind", "valgrind")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "addon_chain.py"), "--instructions", "--requests", "28",
                        "--traffic", "beacons"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"(\d+) instructions per request \(28 requests of the beacons traffic, callgrind\)", r.stdout)
    assert m, r.stdout
    assert 200_000 < int(m.group(1)) < 20_000_000  # a beacon is some two million: not the interpreter's start-up


def test_proxy_instructions_counts_a_whole_running_proxy_under_callgrind():
    # The live proxy's instructions per request, TLS and mitmproxy's core included: after the warm-up, counted
    # between callgrind's zero and dump, and refused when a request failed.
    require("valgrind", "valgrind")
    require("nginx", "nginx")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "proxy_instructions.py"), "--requests", "20",
                        "--kinds", "privproxy"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"privproxy +([\d,]+) instructions per request \(20 requests of the beacons traffic", r.stdout)
    assert m, r.stdout
    assert 1_000_000 < int(m.group(1).replace(",", "")) < 50_000_000  # a beacon is some 4.5 million
