"""Operators' errors get FILE:LINE:COL and a fix; a broken live edit keeps the last good rules (C15)."""

from __future__ import annotations

import subprocess
import time
import urllib.request

from tests.helpers import REPO, privproxy_exe, request, start_proxy, tls_context


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(privproxy_exe() + list(args), capture_output=True, text=True, timeout=60, cwd=cwd)


def test_check_shipped_file_is_valid():
    r = run_cli("check", str(REPO / "filters.yaml"))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_check_names_unknown_key_and_line(tmp_path):
    bad = tmp_path / "filters.yaml"
    bad.write_text("version: 1\nhttps:\n  redirect: true\n  hsts:\n    max_agee: 10\nrulez: []\n")
    r = run_cli("check", str(bad))
    assert r.returncode == 1
    assert f"{bad}:5:5: unknown key `https.hsts.max_agee` — did you mean `max_age`?" in r.stderr
    assert f"{bad}:6:1: unknown key `rulez` — did you mean `rules`?" in r.stderr


def test_run_refuses_to_start_with_bad_config(tmp_path, origin):
    bad = tmp_path / "f.yaml"
    bad.write_text("version: 1\nhttps:\n  redirect_status: [\n")
    r = run_cli("run", "--upstream", origin.url, "--config", str(bad), "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert f"{bad}:" in r.stderr and "invalid YAML" in r.stderr


def test_hot_reload_and_broken_edit_keeps_old_rules(tmp_path, origin):
    cfg = tmp_path / "filters.yaml"
    cfg.write_text("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [foo]}\n")
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/1?foo=x1&bar=y1", tls=ctx)
        time.sleep(1.1)  # mtime resolution
        cfg.write_text("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [bar]}\n")
        deadline = time.monotonic() + 10
        while "reloaded" not in p.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        request(p.port, "/2?foo=x2&bar=y2", tls=ctx)
        cfg.write_text("version: 1\nrules:\n  - {id: a, action: dropp, scopes: [query], names: [foo]}\n")
        deadline = time.monotonic() + 10
        while "keeping the previous rules" not in p.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert request(p.port, "/3?foo=x3&bar=y3", tls=ctx).status == 200  # still serving
        records = p.log_records(wait_for=3)
    finally:
        p.stop()
    paths = [r["path"] for r in records]
    assert paths == ["/1?bar=y1", "/2?foo=x2", "/3?foo=x3"]
    err = p.stderr()
    assert f"{cfg}:3:" in err and "dropp" in err and "did you mean `drop`" in err


def test_check_refuses_an_empty_or_versionless_file(tmp_path):
    f = tmp_path / "filters.yaml"
    for text, error in [("", f"{f}:1:1: the file is empty"), ("# all commented out\n", f"{f}:1:1: the file is empty"),
                        ("rules: []\n", f"{f}:1:1: `version` is missing")]:
        f.write_text(text)
        r = run_cli("check", str(f))
        assert r.returncode == 1 and error in r.stderr and "version: 1" in r.stderr and "OK" not in r.stdout, text


def test_hot_reload_to_an_empty_file_keeps_the_protections(tmp_path, origin):
    # A truncating editor or an empty ConfigMap key: the proxy must not serve one request without its rules.
    cfg = tmp_path / "filters.yaml"
    cfg.write_text("version: 1\ndisable: [hsts]\nhttps: {hsts: {max_age: 0}}\n")
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    ctx = tls_context(p.ca)
    try:
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
        assert 'privproxy_protection_disabled{protection="hsts"} 1.0' in metrics
        assert 'privproxy_protection_disabled{protection="click-ids"} 0.0' in metrics
        time.sleep(1.1)  # mtime resolution
        cfg.write_text("")
        deadline = time.monotonic() + 10
        while "keeping the previous rules" not in p.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert request(p.port, "/page?gclid=CANARYGCLID&uid=CANARYUID&q=1", tls=ctx).status == 200
        records = p.log_records(wait_for=1)
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    assert "CANARYGCLID" not in records[0]["path"] and "CANARYUID" not in records[0]["path"]
    assert f"{cfg}:1:1: the file is empty" in p.stderr()
    assert 'privproxy_config_reloads_total{result="failure"} 1.0' in metrics
    assert 'privproxy_protection_disabled{protection="hsts"} 1.0' in metrics
