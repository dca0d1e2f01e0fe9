"""The `mitmdump -s addons/privproxy_mitmdump.py` path: same addons, mitmproxy's full tool set around them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CLIENT_IP, REPO, request, tls_context


def mitmdump() -> str:
    exe = Path(sys.executable).with_name("mitmdump")
    return str(exe) if exe.exists() else shutil.which("mitmdump") or "mitmdump"


@pytest.fixture
def dump(tmp_path, origin):
    ready = tmp_path / "ready.json"
    out = tmp_path / "out.txt"
    cmd = [mitmdump(), "-s", str(REPO / "addons" / "privproxy_mitmdump.py"),
           "--mode", f"reverse:{origin.url}@127.0.0.1:0",
           "--set", f"confdir={tmp_path / 'conf'}",
           "--set", f"privproxy_config={REPO / 'filters.yaml'}",
           "--set", f"privproxy_log_dir={tmp_path / 'logs'}",
           "--set", f"privproxy_ready_file={ready}"]
    proc = subprocess.Popen(cmd, stdout=open(out, "wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
                            env={**os.environ, "PRIVPROXY_SECRET": "s"})
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)
    port = json.loads(ready.read_text())["listen"][0][1]
    yield port, tmp_path
    proc.terminate()
    proc.wait(10)


def test_mitmdump_script_enforces_the_same_rules(dump, origin):
    port, tmp = dump
    assert request(port, "/x?gclid=abc").status == 308
    r = request(port, "/x?gclid=abc&q=watch", tls=tls_context(tmp / "conf" / "mitmproxy-ca-cert.pem"),
                headers={"X-Forwarded-For": "203.0.113.5"})
    assert r.status == 200
    assert r.header("strict-transport-security")
    assert origin.last().headers["x-forwarded-for"] == ["127.9.8.0"]
    # mitmdump's own output (its default flow_detail prints client address and URL) carries neither
    time.sleep(1.5)
    out = (tmp / "out.txt").read_text()
    assert CLIENT_IP not in out
    assert "gclid" not in out
    log = (tmp / "logs" / "access.jsonl").read_text()
    assert "q=watch" in log and "gclid" not in log and CLIENT_IP not in log
