"""The access log written by the real proxy keeps statistics and loses identifiers (C2, C3, C4, C10)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import CLIENT_IP, REPO, privproxy_exe, request, start_proxy, tls_context
from tests.tools import require


def wait_lines(log: Path, count: int) -> Path:
    """`log`, once it has `count` lines (or after 5 seconds)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < count):
        time.sleep(0.1)
    return log


def goaccess_general(goaccess: str, log: Path, log_format: str, report: Path) -> dict:
    """GoAccess's own reading of `log` in its `log_format`: the "general" section of its JSON report."""
    r = subprocess.run([goaccess, str(log), f"--log-format={log_format}", "--no-global-config", "-o", str(report)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(report.read_text())["general"]


def test_shipped_rules_scrub_the_access_log(tmp_path, origin):
    # 001 §9.2.1 (no identification), §9.2.2 (still useful for troubleshooting); 004 specific information
    p = start_proxy(tmp_path / "p", origin.url, config=REPO / "filters.yaml")
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/products?q=watch&page=2&gclid=EAIaIQ-secretclick&fbclid=IwAR-click", tls=ctx)
        request(p.port, "/newsletter?email=jane.doe%40example.com&tel=090-1234-5678", tls=ctx)
        request(p.port, "/go?dl=https%3A%2F%2Fshop.example%2Fp%3Fmail%3Djane%2540example.com%26x%3D1", tls=ctx)
        request(p.port, "/health/diabetes-clinic?doctor=smith", tls=ctx,
                headers={"Referer": "https://localhost/search?q=diabetes&email=jane.doe@example.com"})
        request(p.port, "/orders/20240115?uid=member-4711", tls=ctx,
                headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                       "(KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36"})
        records = p.log_records(wait_for=5)
    finally:
        p.stop()
    text = (p.log_dir / "access.jsonl").read_text()
    for secret in ("EAIaIQ-secretclick", "IwAR-click", "jane.doe", "jane%40", "090-1234-5678", "diabetes-clinic",
                   "smith", "member-4711", CLIENT_IP, "6099"):
        assert secret not in text, secret
    paths = [r["path"] for r in records]
    assert paths[0] == "/products?q=watch&page=2"  # statistics survive
    assert paths[1] == "/newsletter?email=[redacted]&tel=[redacted]"
    assert paths[2].startswith("/go?dl=https://shop.example/p") and "x%3D1" in paths[2]
    assert paths[3] == "/health/*"
    assert records[3]["referrer"] == "https://localhost/search?q=diabetes&email=[redacted]"
    assert paths[4].startswith("/orders/20240115?uid=pp_")  # a daily pseudonym keeps unique counts
    assert records[4]["user_agent"] == "Chrome 120 (Windows)"
    assert all(r["client"] == "127.9.8.0" and r["request_id"] and r["status"] == 200 for r in records)
    # without --instance, records name this host and the first listen port
    assert {r["instance"] for r in records} == {f"{socket.gethostname()[:48]}:{p.port}"}


def test_tracking_cookies_pseudonymized_and_not_set_without_consent(tmp_path, origin):
    # 002 use of cookies, 001 §8.2.2 (C4): analytics cookies never identify a visitor at the origin
    p = start_proxy(tmp_path / "p", origin.url, config=REPO / "filters.yaml")
    try:
        r = request(p.port, "/tagged", tls=tls_context(p.ca),
                    headers={"Cookie": "session=s3cret-session; _ga=GA1.1.918273645.1700000000; "
                                       "_gcl_aw=GCL.1700000000.clickid-42; lang=ja"})
        assert len(p.log_records(wait_for=1)) == 1
        text = (p.log_dir / "access.jsonl").read_text()
    finally:
        p.stop()
    assert [c.split("=", 1)[0] for c in r.all("set-cookie")] == ["session"]
    seen = origin.last().headers["cookie"]
    assert len(seen) == 1
    cookies = dict(c.split("=", 1) for c in seen[0].split("; "))
    assert cookies["session"] == "s3cret-session" and cookies["lang"] == "ja"
    assert "_gcl_aw" not in cookies  # click ids are dropped
    assert cookies["_ga"].startswith("pp_") and "918273645" not in seen[0]
    for raw in ("918273645", "clickid-42", "5647382910", "s3cret-session"):
        assert raw not in text


def test_combined_log_reads_in_goaccess_and_json_matches(tmp_path, origin):
    # C3: the logs stay useful to existing tools; the host field is the truncated address
    goaccess = require("goaccess", "goaccess")
    p = start_proxy(tmp_path / "p", origin.url, "--log-format", "both", config=REPO / "filters.yaml")
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/products?q=watch&gclid=EAIaIQ-secretclick", tls=ctx,
                headers={"User-Agent": 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 '
                                       '(KHTML, like Gecko) Version/17.2 Safari/605.1.15',
                         "Referer": 'https://localhost/?q="quoted"&email=jane%40example.com'})  # the site's own
        request(p.port, "/newsletter?email=jane.doe%40example.com", tls=ctx)
        request(p.port, "/plain")
        records = p.log_records(wait_for=3)
        combined = wait_lines(p.log_dir / "access.log", 3)
    finally:
        p.stop()
    lines = combined.read_text().splitlines()
    assert len(lines) == len(records) == 3
    assert all(line.startswith("127.9.8.0 - - [") for line in lines)
    assert '"GET /products?q=watch HTTP/1.1" 200 5 ' in lines[0]
    assert "\\x22quoted\\x22" in lines[0] and "jane" not in combined.read_text()
    assert '"GET /plain HTTP/1.1" 308 - "-"' in lines[2]
    general = goaccess_general(goaccess, combined, "COMBINED", tmp_path / "report.json")
    assert general["total_requests"] == 3 and general["failed_requests"] == 0


def test_vhost_combined_is_read_by_goaccess_and_by_filter_log(tmp_path, origin):
    # issue 21 item 5: Apache's vhost_combined from the proxy's own writer; C3: existing tools read it
    goaccess = require("goaccess", "goaccess")
    p = start_proxy(tmp_path / "p", origin.url, "--log-format", "vhost_combined", config=REPO / "filters.yaml")
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/products?q=watch&uid=member-42&gclid=EAIaIQ-secretclick", tls=ctx,
                headers={"Referer": "https://shop.example/cart?email=jane%40example.com"})
        request(p.port, "/health/clinic-7", tls=ctx)
        log = wait_lines(p.log_dir / "access.log", 2)
    finally:
        p.stop()
    assert not (p.log_dir / "access.jsonl").exists()
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"localhost:{p.port} 127.9.8.0 - - [") for line in lines)
    text = log.read_text()
    assert "member-42" not in text and "secretclick" not in text and "jane" not in text
    assert '"GET /health/* HTTP/1.1"' in lines[1]
    general = goaccess_general(goaccess, log, "VCOMBINED", tmp_path / "report.json")
    assert general["total_requests"] == 2 and general["failed_requests"] == 0
    # filter-log reads the proxy's own layout back: every line parses, nothing left to change
    r = subprocess.run([*privproxy_exe(), "filter-log", "--config", str(REPO / "filters.yaml"), "--format",
                        "vhost_combined", str(log)], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PRIVPROXY_SECRET": "logs-test"})
    assert r.returncode == 0 and "2 lines read, 2 written, 0 not parsed" in r.stderr, r.stderr
    assert [line.split(" ", 1)[0] for line in r.stdout.splitlines()] == [f"localhost:{p.port}"] * 2
