"""The deployment files run for real: the systemd unit's command line serves and shuts down cleanly, refuses
to start without its secrets, its reload command re-reads the files and keeps serving, and a ConfigMap update
(the kubelet's atomic symlink swap) is reloaded (C11, C15)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from privproxy.workers import parse_workers
from tests.helpers import REPO, free_port, http_status, privproxy_exe, request, start_proxy, tls_context
from tests.unit.test_deploy import env_file, unit_exec_start

SECRETS = {"PRIVPROXY_SECRET": "unit-secret-0123456789abcdef0123456789",
           "PRIVPROXY_CONSENT_KEY": "unit-consent-key-0123456789abcdef012345"}


def unit_command(tmp: Path, origin_url: str, listen: int, metrics: int) -> list[str]:
    """The unit's ExecStart for privproxy@web-1 with this machine's paths in place of /opt, /etc and /var."""
    unit = (REPO / "deploy" / "systemd" / "privproxy@.service").read_text()
    env = {**env_file(REPO / "deploy" / "systemd" / "web-1.env"), "PRIVPROXY_UPSTREAM": origin_url,
           "PRIVPROXY_LISTEN": f"127.0.0.1:{listen}", "PRIVPROXY_METRICS": f"127.0.0.1:{metrics}"}
    words = unit_exec_start(unit, "web-1", env)
    assert words[0] == "/opt/privproxy/bin/privproxy"
    cfg = tmp / "etc" / "filters.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text((REPO / "filters.yaml").read_text())
    swaps = {"/etc/privproxy": str(tmp / "etc"), "/var/log/privproxy": str(tmp / "log"),
             "/var/lib/privproxy": str(tmp / "lib")}
    out = []
    for w in words[1:]:
        for old, new in swaps.items():
            w = w.replace(old, new)
        out.append(w)
    return privproxy_exe() + out


@contextlib.contextmanager
def unit_running(tmp: Path, cmd: list[str], metrics: int) -> Iterator[subprocess.Popen[bytes]]:
    """The unit's command run with its secrets (stderr to tmp/stderr.txt), from its /readyz answering 200 on;
    at the end SIGTERM stops it with status 0 (after a failure it is killed)."""
    err = open(tmp / "stderr.txt", "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **SECRETS})
    try:
        deadline = time.monotonic() + 20
        while http_status(f"http://127.0.0.1:{metrics}/readyz") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "stderr.txt").read_text()
            time.sleep(0.1)
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        err.close()


def test_systemd_unit_command_serves_and_stops_cleanly(tmp_path, origin):
    listen, metrics = free_port(), free_port()
    cmd = unit_command(tmp_path, origin.url, listen, metrics)
    with unit_running(tmp_path, cmd, metrics):
        # the unit's instance trusts HAProxy's address (127.0.0.1) for X-Forwarded-For, as web-1.env says
        r = request(listen, "/via-lb?gclid=click-123", source="127.0.0.1",
                    headers={"X-Forwarded-For": "198.51.100.23", "X-Forwarded-Proto": "https"})
        assert r.status == 200
        assert origin.last().headers["x-forwarded-for"] == ["198.51.100.0"]
    (record,) = [json.loads(line) for line in (tmp_path / "log" / "web-1" / "access.jsonl").read_text().splitlines()]
    assert record["instance"] == "web-1" and record["client"] == "198.51.100.0" and "click-123" not in record["path"]


def test_systemd_reload_rereads_the_files_and_keeps_serving(tmp_path, origin):
    listen, metrics = free_port(), free_port()
    cmd = unit_command(tmp_path, origin.url, listen, metrics)
    unit = (REPO / "deploy" / "systemd" / "privproxy@.service").read_text()
    reload_line = re.search(r"^ExecReload=(.+)$", unit, re.M).group(1)
    with unit_running(tmp_path, cmd, metrics) as proc:
        for _ in range(2):  # `systemctl reload privproxy@web-1`, twice
            subprocess.run(shlex.split(reload_line.replace("$MAINPID", str(proc.pid))), check=True, timeout=10)
            time.sleep(0.3)
        assert proc.poll() is None and http_status(f"http://127.0.0.1:{metrics}/readyz") == 200
        r = request(listen, "/after-reload", source="127.0.0.1",
                    headers={"X-Forwarded-For": "198.51.100.23", "X-Forwarded-Proto": "https"})
        assert r.status == 200
    text = (tmp_path / "stderr.txt").read_text()
    # the unit runs --workers auto: each worker re-reads the files at each reload
    assert text.count("SIGHUP: re-reading " + str(tmp_path / "etc" / "filters.yaml")) == 2 * parse_workers("auto")
    assert "filters.yaml unchanged" in text


def test_require_secrets_refuses_to_start_without_them(tmp_path, origin):
    cmd = unit_command(tmp_path, origin.url, free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert "PRIVPROXY_SECRET" in r.stderr and "PRIVPROXY_CONSENT_KEY" in r.stderr and "Secret" in r.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={**env, "PRIVPROXY_SECRET": SECRETS["PRIVPROXY_SECRET"], "PRIVPROXY_CONSENT_KEY": "short"})
    assert r.returncode != 0 and "consent key" in r.stderr


def kubelet_publish(d: Path, text: str, version: int) -> None:
    """What the kubelet does on a ConfigMap update: a new timestamped directory, then an atomic rename of the
    `..data` symlink onto it; `filters.yaml` itself is a symlink through `..data` and never changes."""
    new = d / f"..2026_11_23_00_00_0{version}.{version}"
    new.mkdir()
    (new / "filters.yaml").write_text(text)
    tmp_link = d / "..data_tmp"
    tmp_link.symlink_to(new.name)
    os.rename(tmp_link, d / "..data")
    if not (d / "filters.yaml").is_symlink():
        (d / "filters.yaml").symlink_to("..data/filters.yaml")


def test_configmap_update_by_symlink_swap_is_reloaded(tmp_path, origin):
    d = tmp_path / "config"
    d.mkdir()
    kubelet_publish(d, "version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [foo]}\n", 1)
    p = start_proxy(tmp_path / "p", origin.url, config=d / "filters.yaml", metrics=True)
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/1?foo=x1&bar=y1", tls=ctx)
        kubelet_publish(d, "version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [bar]}\n", 2)
        deadline = time.monotonic() + 10
        while "reloaded" not in p.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        request(p.port, "/2?foo=x2&bar=y2", tls=ctx)
        kubelet_publish(d, "version: 1\nrules: [{id: a, action: dropp}]\n", 3)  # a broken edit
        deadline = time.monotonic() + 10
        while "keeping the previous rules" not in p.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert request(p.port, "/3?foo=x3&bar=y3", tls=ctx).status == 200
        records = p.log_records(wait_for=3)
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    assert [r["path"] for r in records] == ["/1?bar=y1", "/2?foo=x2", "/3?foo=x3"]
    assert 'privproxy_config_reloads_total{result="failure"} 1.0' in metrics
    assert 'privproxy_config_reloads_total{result="success"} 2.0' in metrics
