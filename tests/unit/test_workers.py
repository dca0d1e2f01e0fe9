"""privproxy.workers: the supervisor of `run --workers N`, driven with a small stand-in worker (no mitmproxy): the
sockets it binds, the spec and status it hands over, restarts with backoff, signals forwarded, reloads validated
first and confirmed by every worker, and the summed metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from privproxy import pseudonyms, workers
from privproxy.metrics import WorkerMetrics
from privproxy.workers import Hooks, Status, Supervisor, WorkerSpec

# A stand-in worker: accepts on its inherited sockets, answers "pid\n", reports its status, reloads the file named
# by FAKE_CONFIG on SIGHUP (its first line is the "sha"), drains on SIGTERM (exit 0).
FAKE = r"""
import os, signal, socket, sys, threading, time
sys.path.insert(0, os.environ["FAKE_PATH"])
from privproxy.workers import Status, worker_spec
spec = worker_spec()
assert "PRIVPROXY_WORKER" not in os.environ
config = os.environ.get("FAKE_CONFIG", "")
state = {"sha": open(config).readline().strip() if config else "none", "stop": False}
signal.signal(signal.SIGHUP, lambda *a: state.update(sha=open(config).readline().strip() if config else "none"))
signal.signal(signal.SIGTERM, lambda *a: state.update(stop=True))
for socks in spec.sockets().values():
    for s in socks:
        s.settimeout(0.05)
        def serve(s=s):
            while True:
                try:
                    c, _ = s.accept()
                except (TimeoutError, OSError):
                    if state["stop"]:
                        return
                    continue
                c.sendall(f"{os.getpid()} {spec.key.hex()}\n".encode()); c.close()
        threading.Thread(target=serve, daemon=True).start()
while not state["stop"]:
    Status(os.getpid(), True, state["sha"], time.time()).write(spec.status)
    time.sleep(0.05)
Status(os.getpid(), False, state["sha"], time.time()).write(spec.status)
"""
SRC = str(Path(workers.__file__).parents[1])


class Recorder(Hooks):
    def __init__(self) -> None:
        self.restarts = 0
        self.rounds: list[bool] = []
        self.gone: list[int] = []

    def restarted(self) -> None:
        self.restarts += 1

    def reload_round(self, ok: bool) -> None:
        self.rounds.append(ok)

    def worker_gone(self, pid: int) -> None:
        self.gone.append(pid)

    def validate(self, path: Path) -> str:
        first = path.read_text().splitlines()[0]
        if first.startswith("bad"):
            raise ValueError(f"{path}:1:1: bad rules")
        return first


def supervisor(tmp_path: Path, n: int = 2, config: Path | None = None, script: str = FAKE) -> Supervisor:
    env = {**os.environ, "FAKE_PATH": SRC, "FAKE_CONFIG": str(config or "")}
    return Supervisor(n, [sys.executable, "-c", script], [("127.0.0.1", 0)], config, Recorder(), env=env,
                      run_dir=tmp_path / "run", drain_timeout=5)


@pytest.fixture
def running(tmp_path):
    """A supervisor's loop on a thread (signals are simulated by appending to .signals)."""
    started: list[Supervisor] = []
    result: dict[str, int] = {}

    def go(sup: Supervisor) -> Supervisor:
        (tmp_path / "run").mkdir(exist_ok=True)
        started.append(sup)
        ready = threading.Event()
        sup.install_signals = lambda: None  # signals only reach the main thread: the test appends them itself
        t = threading.Thread(target=lambda: result.update(code=sup.run(ready.set)), daemon=True)
        t.start()
        assert ready.wait(30), "workers did not start"
        sup.thread = t  # type: ignore[attr-defined]
        return sup

    yield go, result
    for sup in started:
        sup.signals.append(signal.SIGTERM)
        sup.wake.set()
        sup.thread.join(20)  # type: ignore[attr-defined]


def ask(port: int) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        pid, key = s.makefile().readline().split()
    return int(pid), key


def wait_for(cond, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_parse_workers():
    assert workers.parse_workers("3") == 3
    assert workers.parse_workers("auto", Path("/nonexistent")) == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", "1000", ""):
        with pytest.raises(ValueError, match="--workers"):
            workers.parse_workers(bad)


def test_auto_stays_within_the_cgroups_cpu_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # a container limited to 1.5 CPUs
    assert workers.parse_workers("auto", cpu_max) == min(2, len(os.sched_getaffinity(0)))
    cpu_max.write_text("50000 100000\n")
    assert workers.parse_workers("auto", cpu_max) == 1
    cpu_max.write_text("max 100000\n")
    assert workers.parse_workers("auto", cpu_max) == len(os.sched_getaffinity(0))


def test_bind_slots_share_one_port_and_fail_with_the_address():
    slots = workers.bind_slots([("127.0.0.1", 0)], 3)
    try:
        ports = {port for slot in slots for _, port, _ in slot}
        assert len(ports) == 1 and all(len(slot) == 1 for slot in slots)
        (port,) = ports
        for slot in slots:
            (_, _, s) = slot[0]
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert s.getsockname() == ("127.0.0.1", port)
        with socket.socket() as other, pytest.raises(OSError):  # an ordinary bind cannot steal the port
            other.bind(("127.0.0.1", port))
        with pytest.raises(OSError, match=f"--listen 127.0.0.1:{port}"):  # nor a second supervisor
            workers.bind_slots([("127.0.0.1", port)], 2)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError, match=f"--listen 127.0.0.1:{taken.getsockname()[1]}"):
                workers.bind_slots([("127.0.0.1", taken.getsockname()[1])], 2)
    finally:
        for slot in slots:
            for *_, s in slot:
                s.close()


def test_spec_travels_in_the_environment_and_is_taken_out():
    spec = WorkerSpec(1, "/run/w.json", (("::1", 8443, (5, 6)),), "daily:20423", b"k" * 32)
    env = {workers.ENV: spec.to_env(), "OTHER": "x"}
    assert workers.worker_spec(env) == spec
    assert env == {"OTHER": "x"}  # the key does not reach the worker's children
    assert workers.worker_spec(env) is None
    assert "k" * 8 not in repr(spec)
    assert workers.listen_argument("::1", 8443) == "[::1]:8443"
    assert workers.listen_argument("127.0.0.1", 80) == "127.0.0.1:80"


def test_status_round_trip(tmp_path):
    st = Status(12, True, "abc", 1.5)
    st.write(tmp_path / "s.json")
    assert Status.read(tmp_path / "s.json") == st
    (tmp_path / "bad.json").write_text("{")
    assert Status.read(tmp_path / "bad.json") is None
    assert Status.read(tmp_path / "missing.json") is None


def test_workers_share_the_socket_and_the_random_key(tmp_path, running):
    go, _ = running
    sup = go(supervisor(tmp_path))
    (port,) = {p for _, p in sup.listen}
    seen = {ask(port) for _ in range(40)}
    pids = {pid for pid, _ in seen}
    keys = {key for _, key in seen}
    assert pids == set(sup.pids()) and len(pids) == 2  # the kernel spreads connections over both
    assert len(keys) == 1 and len(bytes.fromhex(keys.pop())) == pseudonyms.KEY_BYTES
    assert sup.ready() == (True, "2 workers serving")


def test_a_dead_worker_is_replaced_with_backoff_and_counted(tmp_path, running):
    go, _ = running
    sup = go(supervisor(tmp_path))
    (port,) = {p for _, p in sup.listen}
    victim = sup.slots[0].proc.pid
    other = sup.slots[1].proc.pid
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: sup.hooks.restarts == 1)
    assert sup.ready()[0] is False
    assert sup.slots[0].failures == 1 and sup.backoff(sup.slots[0]) == workers.FIRST_BACKOFF
    assert wait_for(lambda: sup.ready()[0])
    assert sup.hooks.gone == [victim]
    assert victim not in sup.pids() and other in sup.pids()
    assert {ask(port)[0] for _ in range(30)} == set(sup.pids())


def test_backoff_doubles_while_workers_die_young(tmp_path):
    sup = supervisor(tmp_path, n=1)
    try:
        slot = sup.slots[0]
        delays = []
        for failures in range(1, 10):
            slot.failures = failures
            delays.append(sup.backoff(slot))
        assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and max(delays) == workers.MAX_BACKOFF
    finally:
        sup.close()


def test_sigterm_drains_every_worker_and_returns(tmp_path, running):
    go, result = running
    sup = go(supervisor(tmp_path))
    pids = sup.pids()
    sup.signals.append(signal.SIGTERM)
    sup.wake.set()
    sup.thread.join(20)
    assert result["code"] == 0
    assert sup.ready() == (False, "not serving (shutting down)")
    assert sup.hooks.restarts == 0  # drained workers are not replaced
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "run").exists()


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path):
    sup = supervisor(tmp_path, script="import sys; sys.exit(3)")
    sup.install_signals = lambda: None
    assert sup.run() == 3


def test_reload_is_validated_then_confirmed_by_every_worker(tmp_path, running):
    config = tmp_path / "filters.yaml"
    config.write_text("v1\n")
    go, _ = running
    sup = go(supervisor(tmp_path, config=config))
    assert sup.sha256 == "v1"
    config.write_text("bad edit\n")  # refused: no worker is told
    assert wait_for(lambda: sup.hooks.rounds == [False])
    time.sleep(0.3)
    assert {Status.read(tmp_path / "run" / f"worker-{i}.json").sha256 for i in range(2)} == {"v1"}
    config.write_text("v2\n")
    sup.signals.append(signal.SIGHUP)
    sup.wake.set()
    assert wait_for(lambda: sup.hooks.rounds[-1:] == [True])
    assert sup.sha256 == "v2" and set(sup.shas()) == {"v2"}


def test_a_worker_that_keeps_the_old_rules_is_reported(tmp_path, running, monkeypatch, caplog):
    config = tmp_path / "filters.yaml"
    config.write_text("v1\n")
    go, _ = running
    monkeypatch.setattr(workers, "RELOAD_WAIT", 0.5)
    sup = go(supervisor(tmp_path, config=config))
    sup.hooks.validate = lambda path: "v-the-workers-never-reach"
    sup.signals.append(signal.SIGHUP)
    sup.wake.set()
    assert wait_for(lambda: sup.hooks.rounds == [False])
    assert "did not load the rules" in caplog.text


def test_worker_metrics_sum_the_workers_files_and_keep_the_dead(tmp_path):
    code = (
        "from privproxy.metrics import Metrics\n"
        "m = Metrics()\n"
        "m.log_written('access'); m.log_written('access'); m.request_started()\n"
    )
    metrics_dir = tmp_path / "m"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": SRC}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    m = WorkerMetrics(metrics_dir, lambda: [], lambda: ["abc", "abc"], 2, lambda: 2)
    from prometheus_client import generate_latest

    text = generate_latest(m.registry).decode()
    assert 'privproxy_log_records_total{stream="access"} 4.0' in text  # two processes, two each
    assert 'privproxy_config_info{sha256="abc"} 1.0' in text
    assert "privproxy_workers 2.0" in text and "privproxy_workers_ready 2.0" in text
    assert "process_cpu_seconds_total" in text
    assert "privproxy_requests_in_flight 2.0" in text  # as each process left it
    for db in metrics_dir.glob("gauge_livesum_*.db"):
        m.worker_gone(int(db.stem.rsplit("_", 1)[1]))
    text = generate_latest(m.registry).decode()
    assert 'privproxy_log_records_total{stream="access"} 4.0' in text  # dead workers' counts stay
    assert "privproxy_requests_in_flight " not in text  # their live gauges go


def test_workers_given_the_supervisors_random_key_agree_and_ratchet_alike(monkeypatch):
    from privproxy.pseudonyms import Pseudonymizer, Settings

    monkeypatch.delenv("PRIVPROXY_SECRET", raising=False)
    day = 86400 * 20423
    clock = [day + 10.0]
    alone = [Pseudonymizer(Settings(), clock=lambda: clock[0]) for _ in range(2)]
    assert alone[0].pseudonym("visitor", "cid") != alone[1].pseudonym("visitor", "cid")  # each its own key
    try:
        pseudonyms.share_random_key("daily:20423", b"s" * 32)
        first = Pseudonymizer(Settings(), clock=lambda: clock[0])
        clock[0] += 86400 * 2  # two days later a replaced worker starts
        late = Pseudonymizer(Settings(), clock=lambda: clock[0])
        assert first.mode == late.mode == "ephemeral"  # still a key no one stores
        assert first.pseudonym("visitor", "cid") == late.pseudonym("visitor", "cid")
        assert first.for_destination("log").pseudonym("v") == late.for_destination("log").pseudonym("v")
    finally:
        pseudonyms.share_random_key("", b"")


STALLED = r"""
import os, signal, sys, time
sys.path.insert(0, os.environ["FAKE_PATH"])
from privproxy.workers import Status, worker_spec
spec = worker_spec()
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
Status(os.getpid(), True, "x", time.time() - 100).write(spec.status)  # then never again: a stalled event loop
while True:
    time.sleep(0.05)
"""


def test_a_worker_that_stops_reporting_is_killed_and_replaced(tmp_path, running, monkeypatch, caplog):
    monkeypatch.setattr(workers, "STALL_SECONDS", 1.0)
    go, _ = running
    sup = supervisor(tmp_path, n=1, script=STALLED)
    first = go(sup).slots[0].proc.pid
    assert wait_for(lambda: first in sup.hooks.gone)  # SIGKILLed by the loop, reaped, counted
    assert sup.hooks.restarts >= 1
    assert wait_for(lambda: sup.slots[0].proc is not None and sup.slots[0].proc.pid != first)  # replaced
    assert f"worker 0 (pid {first}) has not reported for 1 s: killing it" in caplog.text


CLOCK_STEPS = FAKE.replace('Status(os.getpid(), True, state["sha"], time.time()).write(spec.status)',
                           'Status(os.getpid(), True, state["sha"], time.time() - (3600 if time.monotonic() - T0 > 0.5 '
                           'else 0)).write(spec.status)').replace("spec = worker_spec()", "spec = worker_spec()\n"
                                                                   "T0 = time.monotonic()")


def test_a_wall_clock_step_kills_no_worker(tmp_path, running, monkeypatch):
    """The stall check ages a beat by the supervisor's monotonic clock from when it changed: an NTP step or a VM
    resumed an hour later (beats suddenly an hour off) is no stall."""
    monkeypatch.setattr(workers, "STALL_SECONDS", 1.0)
    go, _ = running
    sup = go(supervisor(tmp_path, n=2, script=CLOCK_STEPS))
    pids = sup.pids()
    time.sleep(3)
    assert sup.hooks.gone == [] and sup.pids() == pids and sup.live() == (True, "ok")


HANGS_ON_RESTART = FAKE.replace("spec = worker_spec()", """spec = worker_spec()
marker = os.environ["FAKE_MARKER"]
if os.path.exists(marker):  # a replacement: hangs before it ever reports
    while True:
        time.sleep(0.05)
open(marker, "w").close()""")


def test_a_replacement_that_never_starts_is_killed_after_the_start_timeout(tmp_path, running, monkeypatch, caplog):
    go, _ = running
    sup = supervisor(tmp_path, n=1, script=HANGS_ON_RESTART)
    sup.env["FAKE_MARKER"] = str(tmp_path / "started-once")
    go(sup)
    monkeypatch.setattr(workers, "START_TIMEOUT", 1.0)
    first = sup.slots[0].proc.pid
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: sup.slots[0].proc is not None and sup.slots[0].proc.pid != first)
    hung = sup.slots[0].proc.pid
    assert wait_for(lambda: hung in sup.hooks.gone)  # killed: it never reported
    assert f"worker 0 (pid {hung}) has not started" in caplog.text


def test_the_worker_spec_travels_through_a_pipe_not_the_environment():
    spec = workers.WorkerSpec(0, "/run/w.json", (("127.0.0.1", 443, (5,)),), "daily:1", b"k" * 32)
    r, w = os.pipe()
    os.write(w, spec.to_env().encode())
    os.close(w)
    env = {workers.ENV: f"fd:{r}"}
    assert workers.worker_spec(env) == spec and workers.ENV not in env
    with pytest.raises(OSError):
        os.fstat(r)  # read once and closed


def test_a_worker_started_later_gets_only_the_current_periods_key():
    import types

    from privproxy import pseudonyms

    first = b"s" * 32
    sup = types.SimpleNamespace(rotation="daily", key_period="daily:100", _key=first)
    workers.Supervisor._advance_key(sup)
    now = pseudonyms.period_id(time.time(), "daily")
    assert sup.key_period == now and sup._key != first
    assert (int(now.split(":")[1]), sup._key) == pseudonyms.advance(first, "daily:100", "daily", int(now.split(":")[1]))
