"""`privproxy explain` as operators run it: a URL, a browser HAR export, a mitmproxy flow dump."""

from __future__ import annotations

import json
import subprocess

from mitmproxy import http, io
from mitmproxy.test import tflow, tutils

from tests.helpers import REPO, privproxy_exe


def explain(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*privproxy_exe(), "explain", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", "PRIVPROXY_SECRET": "explain-test"})


def test_explain_url_with_shipped_rules():
    r = explain("https://shop.example/newsletter?email=jane%40example.com&page=2&gclid=Cj0abc",
                "-H", "Cookie: _ga=GA1.1.123456789.1700000000; lang=ja")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "contact-params (redact)  filters.yaml:" in out and "click-ids (drop)" in out
    assert "tracking-cookies (hash)" in out
    assert "access log path:     /newsletter?email=[redacted]&page=2\n" in out
    assert "unchanged: query page, cookie lang" in out


def test_explain_har(tmp_path):
    har = {"log": {"version": "1.2", "entries": [
        {"request": {"method": "GET", "url": "https://shop.example/p?uid=member-9&q=x",
                     "headers": [{"name": "Referer", "value": "https://shop.example/recruit/apply?name=Jane"}],
                     "cookies": [{"name": "_fbp", "value": "fb.1.2.3"}]},
         "response": {"status": 200, "headers": [{"name": "Set-Cookie", "value": "_fbp=fb.1.2.3; Path=/"}]}},
        {"request": {"method": "POST", "url": "https://shop.example/inquiry/form", "headers": []},
         "response": {"status": 200, "headers": []}},
    ]}}
    f = tmp_path / "session.har"
    f.write_text(json.dumps(har))
    r = explain("--har", str(f), "--json")
    assert r.returncode == 0, r.stderr
    first, second = [json.loads(line) for line in r.stdout.splitlines()]
    assert {c["rule"] for c in first["changes"]} >= {"visitor-ids", "tracking-cookies"}
    assert first["log"]["referrer"] == "https://shop.example/recruit/*"
    assert first["set_cookie_kept"] == [] and first["origin_cookie"].startswith("_fbp=pp_")
    assert second["log"]["path"] == "/inquiry/*"


def test_explain_mitmproxy_flow_dump(tmp_path):
    f = tmp_path / "flows"
    with open(f, "wb") as fh:
        w = io.FlowWriter(fh)
        flow = tflow.tflow(req=tutils.treq(path=b"/p?fbclid=IwAR0&tel=090-1234-5678", headers=http.Headers(
            [(b"host", b"shop.example"), (b"cookie", b"_ga=GA1.1.1.2")])), resp=True)
        w.add(flow)
    r = explain("--flows", str(f), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["log"]["path"] == "/p?tel=[redacted]"
    assert got["origin_cookie"].startswith("_ga=pp_")


def test_explain_reports_bad_input_and_bad_config(tmp_path):
    bad = tmp_path / "x.har"
    bad.write_text("{not json")
    r = explain("--har", str(bad))
    assert r.returncode == 1 and "x.har: cannot read it" in r.stderr and "Traceback" not in r.stderr
    cfg = tmp_path / "f.yaml"
    cfg.write_text("version: 1\nrulez: []\n")
    r = explain("--config", str(cfg), "/p")
    assert r.returncode == 1 and "f.yaml:2:1: unknown key `rulez`" in r.stderr and "did you mean `rules`" in r.stderr
    r = explain()
    assert r.returncode == 1 and "exactly one of" in r.stderr
