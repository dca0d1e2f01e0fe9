"""`privproxy tune` through its command line: HAR files and access logs, text and JSON (issue 21 item 6)."""

from __future__ import annotations

import json
import subprocess

from tests.helpers import REPO, privproxy_exe
from tests.unit.test_tune import _id, _traffic


def _cli(*args: str, stdin: bytes | None = None):
    return subprocess.run([*privproxy_exe(), "tune", "--config", str(REPO / "filters.yaml"), *args], input=stdin,
                          capture_output=True, timeout=120)


def test_cli_reads_a_har_file_and_an_access_log(tmp_path):
    samples, secrets = _traffic()
    har = {"log": {"entries": [{"request": {"method": s.method, "url": s.url,
                                            "headers": [{"name": k, "value": v} for k, v in s.headers]}}
                               for s in samples]}}
    path = tmp_path / "site.har"
    path.write_text(json.dumps(har))
    r = _cli("--har", str(path))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("41 request(s) read; ")
    assert "hash     ref_code" in out and "drop     shop_sess_token" in out and "- id: tuned-query-hash" in out
    r = _cli("--har", str(path), "--json")
    doc = json.loads(r.stdout)
    assert doc["requests"] == 41
    assert any(f["name"] == "ref_code" and f["suggested"] == "hash" and f["distinct_values"] == 40
               for f in doc["fields"])
    assert "tuned-query-hash" in doc["snippet"] and "keyed digest" in doc["heuristic"]
    for v in secrets:
        assert v.encode() not in r.stdout
    log = "".join(f'203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET /p?aff_id=A{i}x{_id()} HTTP/1.1" 200 5 '
                  f'"-" "curl/8"\n' for i in range(12))
    r = _cli("--log", "-", "--json", stdin=log.encode())
    assert r.returncode == 0, r.stderr
    (field,) = json.loads(r.stdout)["fields"]
    assert field["name"] == "aff_id" and field["seen"] == 12 and field["suggested"] == "hash"
    r = _cli("--log", "-", "--json", "--limit", "5", stdin=log.encode())
    assert json.loads(r.stdout)["requests"] == 5
    r = _cli("--log", "-", "--format", "json", stdin=log.encode())
    assert r.returncode == 1 and b"no requests found; check --format" in r.stderr
    (tmp_path / "bad.har").write_text("{")
    r = _cli("--har", str(tmp_path / "bad.har"))
    assert r.returncode == 1 and b"cannot read it" in r.stderr and b"Traceback" not in r.stderr
