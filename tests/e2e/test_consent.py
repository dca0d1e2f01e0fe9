"""Member-linkage consent end to end: tokens minted with the CLI, GA4 beacons through the real `privproxy run`
over TLS with no, valid, tampered, expired, GPC-overridden and revoked consent, the linked log, and the
data-subject requests run by the CLI while the proxy writes (C5, C12, C13)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.helpers import REPO, privproxy_exe, request, start_proxy, tls_context

KEY = "e2e-consent-key-0123456789abcdef0123456789"
MEMBER = "member-4711"
GA4 = ("/g/collect?v=2&tid=G-ABC123&cid=1234567890.1700000000&uid=" + MEMBER +
       "&sid=1700000001&en=page_view&dl=https%3A%2F%2Flocalhost%2Fitem")


def cli(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run(privproxy_exe() + list(args), capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PRIVPROXY_CONSENT_KEY": KEY, **(env or {})})


def config(tmp_path):
    cfg = tmp_path / "filters.yaml"
    cfg.write_text((REPO / "filters.yaml").read_text().replace(
        "  # revocation_file: revoked-members.txt", "  revocation_file: revoked-members.txt"))
    return cfg


def mint(cfg, member=MEMBER, *extra: str) -> str:
    r = cli("consent", "mint", "--member", member, "--config", str(cfg), *extra)
    assert r.returncode == 0, r.stderr
    cookie = r.stdout.strip()
    assert cookie.startswith("privproxy_consent=v1.k1.")
    return cookie


def alternate_members(port: int, ctx, alice: str, bob: str, answered: dict[str, int], errors: list[str],
                      stop: threading.Event) -> None:
    """Requests with bob's and alice's consent cookies in turn until `stop` (at most 20 s and 2000 requests),
    counting each member's answered ones in `answered`; a client error ends it and goes to `errors`."""
    deadline = time.monotonic() + 20
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline and i < 2000:
            who, cookie = ("alice", alice) if i % 2 else ("bob", bob)
            if request(port, f"/page/{i}", tls=ctx, headers={"Cookie": cookie}).status == 200:
                answered[who] += 1
            i += 1
    except Exception as e:  # reported by the test: a client error would make the counts meaningless
        errors.append(f"request {i}: {e!r}")


def assert_alice_erased(log_dir: Path, answered: dict[str, int]) -> None:
    """After one more erasure of alice: the linked log holds one record of each request answered for bob and
    none of alice's; the anonymous access log, never touched, one of every answer."""
    cli("dsr", "erase", "--member", "alice", "--log-dir", str(log_dir))
    linked = [json.loads(x) for x in (log_dir / "linked.jsonl").read_text().splitlines()]
    assert sum(r["member"] == "bob" for r in linked) == answered["bob"], (answered, len(linked))
    assert not any(r["member"] == "alice" for r in linked)
    access = (log_dir / "access.jsonl").read_text().splitlines()
    assert len(access) == answered["alice"] + answered["bob"]


def test_ga4_beacon_with_and_without_consent_linked_log_and_dsr(tmp_path, origin):
    cfg = config(tmp_path)
    valid = mint(cfg)
    short = mint(cfg, MEMBER, "--ttl", "1s")
    name, value = valid.split("=", 1)
    tampered = f"{name}={value[:-4]}{'AAAA' if not value.endswith('AAAA') else 'BBBB'}"
    assert cli("consent", "verify", valid, "--config", str(cfg)).returncode == 0
    assert "forged" in cli("consent", "verify", tampered, "--config", str(cfg)).stdout
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True, env={"PRIVPROXY_CONSENT_KEY": KEY})
    ctx = tls_context(p.ca)
    cases = {}
    try:
        time.sleep(max(0.0, 2.05 - (time.time() % 1)))  # the 1-second token is now past its expiry
        assert "expired" in cli("consent", "verify", short, "--config", str(cfg)).stdout
        for label, headers in [("none", {}), ("valid", {"Cookie": valid}), ("tampered", {"Cookie": tampered}),
                               ("expired", {"Cookie": short}), ("gpc", {"Cookie": valid, "Sec-GPC": "1"})]:
            r = request(p.port, GA4, tls=ctx, headers={"Cookie": "_ga=GA1.1.1234567890.1700000000", **headers}
                        if not headers.get("Cookie") else {**headers, "Cookie": "_ga=GA1.1.1234567890.1700000000; "
                                                           + headers["Cookie"]})
            assert r.status == 200
            cases[label] = origin.requests[-1]
        # Withdrawal through the revocation list, picked up by the running proxy.
        assert cli("consent", "revoke", "--member", MEMBER, "--config", str(cfg)).returncode == 0
        time.sleep(1.2)
        request(p.port, GA4, tls=ctx, headers={"Cookie": valid})
        cases["revoked"] = origin.requests[-1]
        records = p.log_records(wait_for=6)
        metrics = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    assert cases["valid"].path == GA4  # byte for byte with consent
    assert cases["valid"].headers["cookie"] == ["_ga=GA1.1.1234567890.1700000000"]
    for label in ("none", "tampered", "expired", "gpc", "revoked"):
        got = cases[label]
        assert MEMBER not in got.path and "1234567890" not in got.path, label
        assert "1234567890" not in " ".join(got.headers.get("cookie", [])), label
        assert "en=page_view" in got.path and "tid=G-ABC123" in got.path, label
    for state in ("none", "valid", "forged", "expired", "gpc", "revoked"):
        assert f'privproxy_consent_decisions_total{{state="{state}"}} 1.0' in metrics, state
    assert MEMBER not in metrics and KEY not in metrics
    # Which files hold the member id: only the linked log, only for the consented request.
    access = (p.log_dir / "access.jsonl").read_text()
    linked = [json.loads(x) for x in (p.log_dir / "linked.jsonl").read_text().splitlines()]
    assert len(records) == 6 and MEMBER not in access and "1234567890" not in access
    assert [r["member"] for r in linked] == [MEMBER]
    assert KEY not in p.stderr() and MEMBER not in p.stderr()

    exported = cli("dsr", "export", "--member", MEMBER, "--log-dir", str(p.log_dir))
    assert exported.returncode == 0, exported.stderr
    doc = json.loads(exported.stdout)
    assert doc["member"] == MEMBER and len(doc["records"]) == 1 and doc["records"][0]["path"].startswith("/g/collect")
    erased = cli("dsr", "erase", "--member", MEMBER, "--log-dir", str(p.log_dir))
    assert erased.returncode == 0 and "erased 1 linked records" in erased.stdout
    assert MEMBER not in (p.log_dir / "linked.jsonl").read_text()
    assert (p.log_dir / "access.jsonl").read_text() == access
    assert json.loads(cli("dsr", "export", "--member", MEMBER, "--log-dir", str(p.log_dir)).stdout)["records"] == []
    audit = (p.log_dir / "dsr-audit.jsonl").read_text().splitlines()
    assert [json.loads(a)["action"] for a in audit] == ["export", "erase", "export"] and MEMBER not in "".join(audit)


def test_erase_while_the_proxy_is_logging_keeps_every_other_members_record(tmp_path, origin):
    cfg = config(tmp_path)
    alice, bob = mint(cfg, "alice"), mint(cfg, "bob")
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, env={"PRIVPROXY_CONSENT_KEY": KEY})
    ctx = tls_context(p.ca)
    answered = {"alice": 0, "bob": 0}
    errors: list[str] = []
    stop = threading.Event()

    t = threading.Thread(target=alternate_members, args=(p.port, ctx, alice, bob, answered, errors, stop))
    try:
        t.start()
        erasures = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and erasures < 6:
            time.sleep(0.7)
            r = cli("dsr", "erase", "--member", "alice", "--log-dir", str(p.log_dir))
            assert r.returncode == 0, r.stderr
            erasures += 1
        stop.set()
        t.join(30)
    finally:
        stop.set()
        p.stop()
    assert not errors, errors
    assert not t.is_alive() and answered["bob"] > 20, answered
    assert_alice_erased(p.log_dir, answered)


def test_one_request_over_two_instances_log_directories_with_one_keyed_audit_line(tmp_path, origin):
    """Two instances, each with its own --log-dir under one root (as pods on a shared volume): dsr export and
    erase cover both in one request and one audit line, which names the member by an HMAC under the deployment's
    secret; `dsr audit` finds the lines again with the same secret, and nothing else names the member."""
    cfg = config(tmp_path)
    cookie = mint(cfg)
    secret = {"PRIVPROXY_SECRET": "test-secret-0123456789"}  # what start_proxy gives the instances
    root = tmp_path / "logs"
    proxies = [start_proxy(tmp_path / name, origin.url, "--log-dir", str(root / name), "--instance", name,
                           config=cfg, env={"PRIVPROXY_CONSENT_KEY": KEY}) for name in ("web-1", "web-2")]
    try:
        for p in proxies:
            assert request(p.port, "/account", tls=tls_context(p.ca), headers={"Cookie": cookie}).status == 200
    finally:
        for p in proxies:
            p.stop()
    dirs = ["--log-dir", str(root / "web-1"), "--log-dir", str(root / "web-2")]
    audit_file = str(root / "dsr-audit.jsonl")
    exported = cli("dsr", "export", "--member", MEMBER, *dirs, "--audit-file", audit_file, "--config", str(cfg),
                   env=secret)
    assert exported.returncode == 0, exported.stderr
    assert sorted(r["instance"] for r in json.loads(exported.stdout)["records"]) == ["web-1", "web-2"]
    erased = cli("dsr", "erase", "--member", MEMBER, "--log-dir", str(root / "*"), "--audit-file", audit_file,
                 "--config", str(cfg), env=secret)
    assert erased.returncode == 0 and "erased 2 linked records" in erased.stdout, erased.stderr
    lines = [json.loads(x) for x in (root / "dsr-audit.jsonl").read_text().splitlines()]
    assert [a["action"] for a in lines] == ["export", "erase"]
    assert all(a["member_hmac"] and a["member_key"].startswith("secret:") and len(a["log_dirs"]) == 2 for a in lines)
    assert lines[0]["member_hmac"] == lines[1]["member_hmac"]
    assert not any((root / d / "dsr-audit.jsonl").exists() for d in ("web-1", "web-2"))
    found = cli("dsr", "audit", "--member", MEMBER, "--log-dir", str(root / "*"), "--audit-file", audit_file,
                "--config", str(cfg), env=secret)
    assert [json.loads(x)["action"] for x in found.stdout.splitlines()] == ["export", "erase"]
    other = cli("dsr", "audit", "--member", "member-4712", "--log-dir", str(root / "*"), "--audit-file", audit_file,
                "--config", str(cfg), env=secret)
    assert other.stdout == ""
    for path in root.rglob("*"):
        if path.is_file():  # the access logs never held it, the linked logs no more, the audit never
            assert MEMBER not in path.read_text(errors="replace"), path
