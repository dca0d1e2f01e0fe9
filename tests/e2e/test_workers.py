"""`privproxy run --workers 2`, end to end: real supervisor and worker processes on 127.0.0.1 in front of a real
origin, a real TLS client. One log record per answer whichever worker answered (under SIGTERM too), one metrics
endpoint summing the workers, the same pseudonym from both, a killed worker replaced while the other serves,
/readyz, and a reload that every worker takes or none does."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from privproxy.workers import STALL_SECONDS
from tests.helpers import REPO, Origin, request, start_proxy, tls_context
from tests.tools import require

CONFIG = "version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [foo]}\n"


def metrics_text(p) -> str:
    return urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/metrics", timeout=5).read().decode()


def sample(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_prefix} not exported")


def requests_total(p) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text(p).splitlines()
               if line.startswith("privproxy_requests_total{"))


def readyz(p) -> tuple[int, str]:
    try:
        r = urllib.request.urlopen(f"http://{p.metrics[0]}:{p.metrics[1]}/readyz", timeout=5)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ready_status(p) -> int:
    """/readyz's status, 0 once the supervisor no longer listens."""
    try:
        return readyz(p)[0]
    except OSError:
        return 0


def ready_doc(p) -> dict:
    return json.loads((p.log_dir.parent / "ready.json").read_text())


def per_worker_requests(tmp: Path) -> dict[int, float]:
    """Requests each worker process counted, from its own multiprocess file (the supervisor's run directory is
    under the TMPDIR the test gave it)."""
    (run_dir,) = tmp.glob("privproxy-workers-*")
    out = {}
    for db in (run_dir / "metrics").glob("counter_*.db"):
        one = tmp / f"one-{db.stem}"
        one.mkdir(exist_ok=True)
        shutil.copy(db, one / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(one))
        out[int(db.stem.split("_")[1])] = sum(s.value for m in registry.collect() if m.name == "privproxy_requests"
                                              for s in m.samples if s.name == "privproxy_requests_total")
    return out


def start(tmp: Path, origin: Origin, *args: str, env: dict[str, str] | None = None, config: Path | None = None):
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    return start_proxy(tmp, origin.url, "--workers", "2", *args, metrics=True, config=config, timeout=60,
                       env={"TMPDIR": str(tmp / "tmp"), **(env or {})})


def load(port: int, ctx, paths: list[str], threads: int, deadline: float) -> list[int]:
    """Requests on new connections (so the kernel spreads them over the workers), bounded in count and time."""
    answered: list[int] = []
    lock = threading.Lock()
    todo = list(paths)

    def run() -> None:
        while time.monotonic() < deadline:
            with lock:
                if not todo:
                    return
                path = todo.pop()
            try:
                status = request(port, path, tls=ctx).status
            except OSError:
                return  # the proxy stopped listening: this client is done
            with lock:
                answered.append(status)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(1.0, deadline - time.monotonic() + 5))
    return answered


def test_two_workers_one_log_one_metrics_same_pseudonym(tmp_path, origin):
    # no PRIVPROXY_SECRET and no key file: the supervisor's random key is the one every worker uses
    p = start(tmp_path / "p", origin, env={"PRIVPROXY_SECRET": ""})
    try:
        assert readyz(p) == (200, "2 workers serving\n")
        ctx = tls_context(p.ca)
        answered = load(p.port, ctx, [f"/page/{i}?uid=visitor-4711" for i in range(60)], 4, time.monotonic() + 60)
        assert answered == [200] * 60
        counts = per_worker_requests(tmp_path / "p" / "tmp")
        assert len(counts) == 2 and all(n > 0 for n in counts.values()), counts  # both workers answered
        assert sum(counts.values()) == 60
        records = p.log_records(wait_for=60)
        text = metrics_text(p)
    finally:
        p.stop()
    assert len(records) == 60  # one whole record per answer, whichever worker wrote it
    pseudonyms = {r["path"].split("uid=", 1)[1] for r in records}
    assert len(pseudonyms) == 1 and "4711" not in pseudonyms.pop()  # the same pseudonym from both workers
    assert sample(text, 'privproxy_requests_total{outcome="forwarded",scheme="https",site="default"}') == 60
    assert sample(text, 'privproxy_log_records_total{stream="access"}') == 60
    assert sample(text, "privproxy_workers_ready") == 2
    assert sample(text, 'privproxy_pseudonym_key_mode{mode="ephemeral"}') == 1
    assert text.count("privproxy_config_info{") == 1


def test_sigterm_under_load_with_two_workers_logs_every_answer(tmp_path, origin):
    p = start(tmp_path / "p", origin)
    ctx = tls_context(p.ca)
    result: list[int] = []
    deadline = time.monotonic() + 30
    loader = threading.Thread(target=lambda: result.extend(
        load(p.port, ctx, [f"/load/{i}?uid=member-{i}" for i in range(2000)], 6, deadline)))
    try:
        loader.start()
        time.sleep(2.0)
        p.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while p.proc.poll() is None and time.monotonic() < deadline and ready_status(p) == 200:
            time.sleep(0.02)
        assert ready_status(p) != 200  # not ready from SIGTERM on (503, then no status port at all)
        loader.join(60)
        code = p.proc.wait(30)
    finally:
        p.stop()
    assert code == 0
    assert len(result) > 10 and set(result) == {200}
    lines = (p.log_dir / "access.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole
    assert len(records) == len(result)  # records == answers
    assert all("member-" not in r["path"] for r in records)


def test_killed_worker_is_replaced_while_the_other_serves(tmp_path, origin):
    p = start(tmp_path / "p", origin)
    ctx = tls_context(p.ca)
    try:
        assert load(p.port, ctx, [f"/before/{i}" for i in range(20)], 2, time.monotonic() + 30) == [200] * 20
        before = requests_total(p)
        assert len(p.log_records(wait_for=20)) == 20  # flushed (a killed process loses its last second's buffer)
        victim, survivor = ready_doc(p)["workers"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while readyz(p)[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readyz(p) == (503, "worker 0 is not serving\n")
        # served meanwhile: by the survivor, or queued on the dead worker's socket until its replacement takes it
        assert load(p.port, ctx, [f"/during/{i}" for i in range(20)], 2, time.monotonic() + 60) == [200] * 20
        deadline = time.monotonic() + 30
        while readyz(p)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert readyz(p) == (200, "2 workers serving\n")
        text = metrics_text(p)
        assert sample(text, "privproxy_worker_restarts_total") == 1
        assert requests_total(p) == before + 20  # the killed worker's counts are kept: never backwards
        os.kill(survivor, 0)  # the other worker was never restarted
        assert load(p.port, ctx, [f"/after/{i}" for i in range(20)], 2, time.monotonic() + 30) == [200] * 20
        records = p.log_records(wait_for=60)
    finally:
        p.stop()
    assert len(records) == 60
    assert "worker 0 (pid" in p.stderr() and "replacing it" in p.stderr()


def answered_within(port: int, ctx, path: str, timeout: float) -> int:
    """One request on a new connection that waits up to `timeout` (a stalled worker's queue is served by its
    replacement), its status."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout),
                                server_hostname="localhost")
    try:
        conn.request("GET", path, headers={"Host": f"localhost:{port}"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_stalled_worker_is_killed_and_replaced_and_its_queue_served(tmp_path, origin):
    """A worker whose event loop stops (here SIGSTOP; a deadlock or a hook that never returns alike) keeps its
    socket, so the kernel keeps queuing connections on it: the supervisor kills it once its status is
    workers.STALL_SECONDS old, and the replacement answers what waited in the queue."""
    p = start(tmp_path / "p", origin)
    ctx = tls_context(p.ca)
    try:
        assert load(p.port, ctx, [f"/before/{i}" for i in range(10)], 2, time.monotonic() + 30) == [200] * 10
        # written out (a killed process loses the records it had not yet written: up to its last second's)
        assert len(p.log_records(wait_for=10)) == 10
        stalled, other = ready_doc(p)["workers"]
        os.kill(stalled, signal.SIGSTOP)
        stopped_at = time.monotonic()
        results: list[int] = []
        waiting = [threading.Thread(target=lambda i=i: results.append(
            answered_within(p.port, ctx, f"/during/{i}", STALL_SECONDS + 40))) for i in range(8)]
        for t in waiting:
            t.start()
        for t in waiting:
            t.join(STALL_SECONDS + 60)
        assert sorted(results) == [200] * 8  # the stalled worker's share (by source port) waited, then was served
        deadline = time.monotonic() + 30
        while readyz(p) != (200, "2 workers serving\n") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert readyz(p) == (200, "2 workers serving\n")
        killed_after = time.monotonic() - stopped_at
        with pytest.raises(ProcessLookupError):
            os.kill(stalled, 0)  # killed and reaped
        os.kill(other, 0)  # the live worker was left alone
        assert sample(metrics_text(p), "privproxy_worker_restarts_total") == 1
        records = p.log_records(wait_for=18)
    finally:
        p.stop()
    assert sorted(r["path"].split("/")[1] for r in records) == ["before"] * 10 + ["during"] * 8
    assert f"worker 0 (pid {stalled}) has not reported for" in p.stderr() or \
        f"worker 1 (pid {stalled}) has not reported for" in p.stderr()
    print(f"\nstalled worker replaced and serving {killed_after:.1f} s after SIGSTOP")


def test_reload_is_taken_by_every_worker_or_by_none(tmp_path, origin):
    config = tmp_path / "filters.yaml"
    config.write_text(CONFIG)
    p = start(tmp_path / "p", origin, config=config)
    try:
        first = metrics_text(p)
        (old_sha,) = [line for line in first.splitlines() if line.startswith("privproxy_config_info{")]
        config.write_text(CONFIG.replace("drop", "dropp"))  # broken: refused by the supervisor, no worker sees it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sample(
                metrics_text(p), 'privproxy_worker_reload_rounds_total{result="failure"}') < 1:
            time.sleep(0.2)
        text = metrics_text(p)
        assert sample(text, 'privproxy_worker_reload_rounds_total{result="failure"}') == 1
        assert [line for line in text.splitlines() if line.startswith("privproxy_config_info{")] == [old_sha]
        assert sample(text, 'privproxy_config_reloads_total{result="failure"}') == 0  # no worker tried it
        assert request(p.port, "/x?foo=a", tls=tls_context(p.ca)).status == 200
        config.write_text(CONFIG.replace("[foo]", "[bar]"))
        os.kill(p.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sample(
                metrics_text(p), 'privproxy_worker_reload_rounds_total{result="success"}') < 1:
            time.sleep(0.2)
        text = metrics_text(p)
        assert sample(text, 'privproxy_worker_reload_rounds_total{result="success"}') >= 1
        assert sample(text, 'privproxy_config_reloads_total{result="failure"}') == 0
        infos = [line for line in text.splitlines() if line.startswith("privproxy_config_info{")]
        assert len(infos) == 1 and infos != [old_sha]
        ctx = tls_context(p.ca)
        assert load(p.port, ctx, [f"/y/{i}?bar=member-1&foo=kept" for i in range(20)], 4,
                    time.monotonic() + 30) == [200] * 20
        records = p.log_records(wait_for=21)
    finally:
        p.stop()
    assert records[0]["path"] == "/x"  # the first rules (foo dropped), kept through the broken edit
    after = [r["path"] for r in records if r["path"].startswith("/y/")]
    assert len(after) == 20 and all(path.endswith("?foo=kept") for path in after)  # every worker runs the new rules
    assert "is invalid, no worker reloads it" in p.stderr()


def test_workers_benchmark_runs_and_counts_every_request_once(tmp_path):
    require("nginx", "nginx")
    require("wrk", "wrk")
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "proxy_vs_mitmdump.py"), "--workers", "--seconds", "1",
                        "--warmup", "1", "--rounds", "1", "--connections", "4", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ratio --workers 2 / --workers 1:" in r.stdout and "errors:" not in r.stdout, r.stdout
    assert "access-log records == privproxy_requests_total in every run" in r.stdout
    doc = json.loads(out.read_text())
    for kind in ("privproxy-w1", "privproxy-w2"):
        (only,) = doc["rounds"][kind]
        assert only["requests"] > 0 and only["non_2xx"] == 0 and only["records"] >= only["requests"], (kind, only)


def test_dsr_erase_while_two_workers_log_keeps_every_other_members_record(tmp_path, origin):
    from tests.e2e.test_consent import KEY, alternate_members, assert_alice_erased, cli, config, mint

    cfg = config(tmp_path)
    alice, bob = mint(cfg, "alice"), mint(cfg, "bob")
    p = start(tmp_path / "p", origin, config=cfg, env={"PRIVPROXY_CONSENT_KEY": KEY})
    ctx = tls_context(p.ca)
    answered = {"alice": 0, "bob": 0}
    errors: list[str] = []
    stop = threading.Event()

    threads = [threading.Thread(target=alternate_members, args=(p.port, ctx, alice, bob, answered, errors, stop))
               for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for _ in range(5):
            time.sleep(0.7)
            r = cli("dsr", "erase", "--member", "alice", "--log-dir", str(p.log_dir))
            assert r.returncode == 0, r.stderr
        stop.set()
        for t in threads:
            t.join(30)
        counts = per_worker_requests(tmp_path / "p" / "tmp")
    finally:
        stop.set()
        p.stop()
    assert not errors, errors
    assert answered["bob"] > 20 and len(counts) == 2 and all(counts.values()), (answered, counts)
    assert_alice_erased(p.log_dir, answered)
