"""Soak: mixed traffic (pages and beacons of every vendor, 40 visitors; bench/traffic.py) through the real
proxy in front of nginx for a bounded time. Resident memory stays flat after warm-up, nothing fails, and the
access log holds exactly one record per answered request (C2, C3; 001 §9.2.2).

CI runs 20 s; PRIVPROXY_SOAK_SECONDS=600 runs a longer soak on demand.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.helpers import CLIENT_IP, REPO, start_proxy, tls_context
from tests.tools import require

sys.path.insert(0, str(REPO / "bench"))
from proxy_vs_mitmdump import start_nginx  # noqa: E402
from traffic import mixed  # noqa: E402

SECONDS = float(os.environ.get("PRIVPROXY_SOAK_SECONDS", "20"))
RSS_GROWTH_LIMIT_MB = 40  # after warm-up; the caches privproxy keeps are bounded far below this


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_soak_memory_flat_no_errors_one_record_per_answer(tmp_path):
    require("nginx", "nginx")
    web = Path(tempfile.mkdtemp(prefix="privproxy-soak-"))
    ng, port = start_nginx(web)
    p = None
    try:
        p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{port}", config=REPO / "filters.yaml")
        ctx = tls_context(p.ca)
        reqs = mixed()
        statuses: dict[int, int] = {}
        failures: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + SECONDS

        def client(k: int) -> None:
            conn = None
            i = k
            while time.monotonic() < deadline and i < 200_000:  # bounded in time and count
                r = reqs[i % len(reqs)]
                i += 3
                try:
                    if conn is None:
                        sock = socket.create_connection(("127.0.0.1", p.port), timeout=10,
                                                        source_address=(CLIENT_IP, 0))
                        conn = http.client.HTTPSConnection("localhost", p.port, context=ctx, timeout=10)
                        conn.sock = ctx.wrap_socket(sock, server_hostname="localhost")
                    conn.request(r.method, r.path, body=r.body.encode() or None,
                                 headers={"Host": f"localhost:{p.port}", **r.headers})
                    resp = conn.getresponse()
                    resp.read()
                    with lock:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except Exception as e:
                    with lock:
                        failures.append(repr(e))
                    conn = None

        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        samples: list[tuple[float, float]] = []
        start = time.monotonic()
        while any(t.is_alive() for t in threads):
            samples.append((time.monotonic() - start, rss_mb(p.proc.pid)))
            time.sleep(0.5)
        for t in threads:
            t.join()
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(30) == 0
    finally:
        if p is not None:
            p.stop()
        ng.send_signal(signal.SIGQUIT)
        ng.wait(10)
        shutil.rmtree(web, ignore_errors=True)
    answered = sum(statuses.values())
    assert not failures, failures[:5]
    assert set(statuses) <= {200, 204}, statuses
    assert answered > 100
    records = (p.log_dir / "access.jsonl").read_text().splitlines()
    assert len(records) == answered
    assert all(json.loads(r)["client"] == "127.9.8.0" for r in records[:50])
    warm = [rss for t, rss in samples if t >= SECONDS / 4]
    growth = max(warm) - warm[0]
    print(f"soak: {answered} requests in {SECONDS:.0f} s, RSS after warm-up {warm[0]:.1f} MB, "
          f"peak {max(warm):.1f} MB, growth {growth:.1f} MB")
    assert growth < RSS_GROWTH_LIMIT_MB, samples
