"""`privproxy run --workers N`: one supervisor, N worker processes serving the same listen sockets.

Plain Python (no mitmproxy): the supervisor binds the sockets, starts and restarts the workers, forwards SIGTERM
(drain) and SIGHUP (reload), validates filters.yaml before any worker sees it, and serves the one status port
(/metrics summed over the workers through prometheus_client's multiprocess files, /readyz when every worker is).

Sockets: one SO_REUSEPORT socket per worker slot and listen address, opened here once and inherited. The kernel
spreads connections over the slots by their addresses (an even share per worker, unlike one shared accept queue,
where the worker that wakes first takes most keep-alive connections), and the supervisor keeps its copy of each
slot's socket, so connections that arrive while a slot's worker is being replaced wait in its queue.

A worker is `privproxy run` itself, given its slot through the PRIVPROXY_WORKER environment variable (read and
removed at start, see `worker_spec`): its sockets, its status file, and the ephemeral pseudonym key the
supervisor drew once, so every worker agrees on pseudonyms even without a key file or secret.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from privproxy import pseudonyms
from privproxy.metrics import WorkerMetrics
from privproxy.outcome import Result
from privproxy.status_server import StatusServer

logger = logging.getLogger(__name__)

ENV = "PRIVPROXY_WORKER"  # the worker's spec, JSON; removed from the worker's environment once read
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode, for the workers only
MAX_WORKERS = 256
BACKLOG = 511  # nginx's default: connections wait here while a slot's worker is being replaced
START_TIMEOUT = 60.0  # a worker not ready this long after its start is taken for dead
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0  # restart delays double from FIRST to MAX while workers keep dying young
STABLE_SECONDS = 30.0  # a worker that lived this long resets its slot's backoff
STALL_SECONDS = 10.0  # a worker whose status has not been written for this long is not live, and is killed
RELOAD_WAIT = 10.0  # seconds every worker has to report the rules the supervisor validated
POLL_SECONDS = 1.0  # filters.yaml is looked at this often
TICK = 0.1
OPERATOR = {"privproxy_operator": True}  # log_redaction.OPERATOR_MESSAGE: addresses from the operator's settings


def parse_workers(value: str, cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """`auto` (the CPUs this process may run on, within its cgroup's CPU quota: a container limited to 2 CPUs on a
    32-core host gets 2) or a number from 1 to MAX_WORKERS; raises ValueError."""
    if value == "auto":
        usable = len(os.sched_getaffinity(0))
        try:
            quota, period = cpu_max.read_text().split()[:2]
            if quota != "max":
                usable = min(usable, -(-int(quota) // int(period)))  # 1.5 CPUs: 2 workers
        except (OSError, ValueError):
            pass  # no cgroup v2 limit readable: the affinity mask alone
        return max(1, min(MAX_WORKERS, usable))
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise ValueError(f"--workers {value!r}: a number from 1 to {MAX_WORKERS}, or auto (one per usable CPU)")
    return int(value)


# --- Sockets ----------------------------------------------------------------------------------------------------


def bind_slots(addresses: Sequence[tuple[str, int]], slots: int) -> list[list[tuple[str, int, socket.socket]]]:
    """For each slot, a listening SO_REUSEPORT socket per address (every address a host name resolves to), all
    slots on the same port: (host as given, bound port, socket). Port 0 takes the first free port for all.
    Raises OSError naming the address."""
    out: list[list[tuple[str, int, socket.socket]]] = [[] for _ in range(slots)]
    try:
        for host, port in addresses:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
                if port:
                    _not_taken(host, family, (*sockaddr[:1], port, *sockaddr[2:]))
                for slot in range(slots):
                    s = socket.socket(family, kind, proto)
                    out[slot].append((host, port, s))  # closed with the rest when a later bind fails
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:  # as asyncio binds: [::] is IPv6 only (README, --listen)
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    try:
                        s.bind((*sockaddr[:1], port, *sockaddr[2:]))
                    except OSError as e:
                        raise OSError(e.errno, f"--listen {host}:{port}: {e.strerror}") from None
                    s.listen(BACKLOG)
                    port = s.getsockname()[1]  # port 0: every slot and address shares the port the first got
                    out[slot][-1] = (host, port, s)
    except BaseException:
        for slot_sockets in out:
            for *_, s in slot_sockets:
                s.close()
        raise
    return out


def _not_taken(host: str, family: int, sockaddr: tuple) -> None:
    """SO_REUSEPORT would share a port with any socket of this user that set it too (a second supervisor started
    by mistake would silently take half the connections): bind without it first, so a port in use is refused."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind(sockaddr)
        except OSError as e:
            raise OSError(e.errno, f"--listen {host}:{sockaddr[1]}: {e.strerror}") from None


# --- The worker's side ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What a worker gets from its supervisor."""

    index: int
    status: str  # the status file this worker writes (Status)
    listen: tuple[tuple[str, int, tuple[int, ...]], ...]  # (host, port, inherited socket fds) per listen address
    key_period: str = ""  # the supervisor's ephemeral pseudonym key and its period
    key: bytes = dataclasses.field(default=b"", repr=False)

    def to_env(self) -> str:
        return json.dumps({"index": self.index, "status": self.status, "listen": [list(x) for x in self.listen],
                           "key_period": self.key_period, "key": self.key.hex()})

    @classmethod
    def from_env(cls, text: str) -> WorkerSpec:
        d = json.loads(text)
        return cls(int(d["index"]), str(d["status"]),
                   tuple((str(h), int(p), tuple(int(f) for f in fds)) for h, p, fds in d["listen"]),
                   str(d.get("key_period", "")), bytes.fromhex(d.get("key", "")))

    def sockets(self) -> dict[tuple[str, int], list[socket.socket]]:
        """The inherited listening sockets by (host, port) as the worker's listen specs name them."""
        found: dict[tuple[str, int], list[socket.socket]] = {}
        for host, port, fds in self.listen:
            found.setdefault((host, port), []).extend(socket.socket(fileno=fd) for fd in fds)
        return found


def worker_spec(environ: dict[str, str] | None = None) -> WorkerSpec | None:
    """This process's spec when it is a worker, taken out of the environment (the key must not reach children)."""
    env = os.environ if environ is None else environ
    text = env.pop(ENV, None)
    if text and text.startswith("fd:"):  # Supervisor.spawn: read from the inherited pipe, then closed
        fd = int(text[3:])
        chunks = []
        try:
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        text = b"".join(chunks).decode()
    return WorkerSpec.from_env(text) if text else None


def listen_argument(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclasses.dataclass(frozen=True)
class Status:
    """A worker's status file, rewritten (atomically) every second: its pid, whether it serves, its rules."""

    pid: int
    ready: bool
    sha256: str
    beat: float  # time.time() of the write

    def write(self, path: str | Path) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: str | Path) -> Status | None:
        try:
            d = json.loads(Path(path).read_text())
            return cls(int(d["pid"]), bool(d["ready"]), str(d["sha256"]), float(d["beat"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


# --- The supervisor ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Slot:
    index: int
    sockets: list[tuple[str, int, socket.socket]]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # deaths in a row of workers that did not live STABLE_SECONDS
    restart_at: float | None = None  # when the dead worker's replacement is due
    beat: float = 0.0  # the last `beat` its status file showed
    beat_seen: float = 0.0  # time.monotonic() when that beat was first seen: a wall-clock step changes neither


@dataclasses.dataclass(frozen=True)
class Reload:
    """A reload round under way: the rules every worker must report by the deadline."""

    sha256: str
    deadline: float


class Hooks(abc.ABC):
    """What the supervisor reports to (metrics) and asks (filters.yaml's validation); the CLI fills it in."""

    def restarted(self) -> None: ...  # noqa: B027 - optional: a hook nobody listens to

    def reload_round(self, ok: bool) -> None: ...  # noqa: B027 - optional: a hook nobody listens to

    def worker_gone(self, pid: int) -> None: ...  # noqa: B027 - optional: a hook nobody listens to

    @abc.abstractmethod
    def validate(self, path: Path) -> str:
        """The SHA-256 of the rules at `path` if a worker would load them; raises with the operator's message."""


class Supervisor:
    def __init__(self, workers: int, command: Sequence[str], addresses: Sequence[tuple[str, int]],
                 config: Path | None, hooks: Hooks, *, drain_timeout: float = 10.0, rotation: str = "daily",
                 env: dict[str, str] | None = None, run_dir: Path | None = None) -> None:
        self.n = workers
        self.command = list(command)
        self.config = config
        self.hooks = hooks
        self.drain_timeout = drain_timeout
        self.env = dict(os.environ if env is None else env)
        self.slots = [Slot(i, s) for i, s in enumerate(bind_slots(addresses, workers))]
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="privproxy-workers-"))  # 0700: the status files
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        # One random key for all workers (used only where a worker would otherwise draw its own): a visitor gets
        # the same pseudonym whichever worker answers. It lives as long as this supervisor, never on disk.
        self.rotation = rotation
        self.key_period = pseudonyms.period_id(time.time(), rotation)
        self._key = secrets.token_bytes(pseudonyms.KEY_BYTES)
        self.stopping: float | None = None  # when SIGTERM came
        self.signals: list[int] = []
        self.wake = threading.Event()
        self.reload: Reload | None = None
        self.sha256 = ""  # the rules all workers run, as last confirmed
        self._stamp = self._config_stamp()
        self._next_poll = 0.0
        self.exit_code = 0

    @property
    def listen(self) -> list[tuple[str, int]]:
        """The bound listen addresses (one per address, from the first slot)."""
        return [(s.getsockname()[0], port) for _, port, s in self.slots[0].sockets]

    # --- processes

    def spawn(self, slot: Slot) -> None:
        fds: dict[tuple[str, int], list[int]] = {}
        for host, port, s in slot.sockets:
            fds.setdefault((host, port), []).append(s.fileno())
        self._advance_key()
        spec = WorkerSpec(slot.index, str(self.run_dir / f"worker-{slot.index}.json"),
                          tuple((h, p, tuple(f)) for (h, p), f in fds.items()), self.key_period, self._key)
        try:
            os.unlink(spec.status)  # a dead worker's status must not vouch for its successor
        except FileNotFoundError:
            pass
        # The spec (with the key) through a pipe, never the environment: /proc/PID/environ keeps what a process
        # started with for its whole life, so a key passed there would outlive its period.
        r, w = os.pipe()
        try:
            os.write(w, spec.to_env().encode())  # a few hundred bytes: within the pipe's buffer
        finally:
            os.close(w)
        env = {**self.env, ENV: f"fd:{r}", MULTIPROC_ENV: str(self.metrics_dir)}
        try:
            # Own process group: a terminal's Ctrl-C reaches the supervisor only, which drains the workers once.
            slot.proc = subprocess.Popen(self.command, env=env,
                                         pass_fds=[r, *(fd for group in fds.values() for fd in group)],
                                         process_group=0)
        finally:
            os.close(r)
        slot.started = slot.beat_seen = time.monotonic()
        slot.restart_at, slot.beat = None, 0.0

    def _advance_key(self) -> None:
        """The shared random key ratcheted to the current period before a worker gets it: a worker started
        months later learns this period's key, from which no earlier pseudonym can be recomputed."""
        _, index = pseudonyms.parse_period(pseudonyms.period_id(time.time(), self.rotation))
        index, self._key = pseudonyms.advance(self._key, self.key_period, self.rotation, index)
        self.key_period = f"{self.rotation}:{index}"

    def status(self, slot: Slot) -> Status | None:
        if slot.proc is None or slot.proc.poll() is not None:
            return None
        got = Status.read(self.run_dir / f"worker-{slot.index}.json")
        return got if got is not None and got.pid == slot.proc.pid else None

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def start(self) -> int | None:
        """Start the workers one after another, each once the previous one serves (the first creates the trial CA
        in --confdir that the others then read). None when all serve, else the exit code to end with."""
        for slot in self.slots:
            self.spawn(slot)
            while True:
                st = self.status(slot)
                if st is not None and st.ready:
                    self.sha256 = self.sha256 or st.sha256
                    break
                if self.signals:  # SIGTERM while starting: the ones started drain
                    self.terminate()
                    return 0
                code = slot.proc.poll() if slot.proc is not None else 1
                if code is not None or time.monotonic() - slot.started > START_TIMEOUT:
                    logger.error("privproxy: worker %d did not start (exit status %s); stopping", slot.index, code)
                    self.terminate()
                    return code or 1
                time.sleep(0.05)
        return None

    def terminate(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.proc is not None:
                try:
                    slot.proc.wait(self.drain_timeout + 10)
                except subprocess.TimeoutExpired:
                    slot.proc.kill()
                    slot.proc.wait()

    def backoff(self, slot: Slot) -> float:
        return min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, slot.failures - 1))

    def reap(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None or slot.restart_at is not None:
                continue
            code = slot.proc.poll()
            if code is None:
                continue
            pid, slot.proc = slot.proc.pid, None
            self.hooks.worker_gone(pid)
            if self.stopping is not None:
                continue
            lived = now - slot.started
            slot.failures = 1 if lived >= STABLE_SECONDS else slot.failures + 1
            slot.restart_at = now + self.backoff(slot)
            self.hooks.restarted()
            logger.error("privproxy: worker %d (pid %d) ended with status %s after %.0f s; replacing it in %.1f s",
                         slot.index, pid, code, lived, slot.restart_at - now)

    def observe(self, now: float) -> None:
        """Note when each worker's status beat last changed (the stall check and /livez judge by that)."""
        for slot in self.slots:
            st = self.status(slot)
            if st is not None and st.beat != slot.beat:
                slot.beat, slot.beat_seen = st.beat, now

    def kill_stalled(self, now: float) -> None:
        """SIGKILL a worker whose event loop has stopped: its status not rewritten for STALL_SECONDS (a deadlock,
        a hook that never returns, SIGSTOP), or never written START_TIMEOUT after its start. Its connections
        would hang while the kernel keeps handing it new ones; reap() replaces it, counted as a restart. Ages
        are the supervisor's monotonic time since it saw the beat change, so a clock step kills nobody."""
        for slot in self.slots:
            if slot.proc is None or slot.restart_at is not None or slot.proc.poll() is not None:
                continue
            if slot.beat and now - slot.beat_seen > STALL_SECONDS:
                why = f"has not reported for {now - slot.beat_seen:.0f} s"
            elif not slot.beat and now - slot.started > START_TIMEOUT:
                why = f"has not started {now - slot.started:.0f} s after it was started"
            else:
                continue
            logger.error("privproxy: worker %d (pid %d) %s: killing it", slot.index, slot.proc.pid, why)
            slot.proc.kill()

    def restart_due(self, now: float) -> None:
        for slot in self.slots:
            if slot.restart_at is not None and now >= slot.restart_at and self.stopping is None:
                self.spawn(slot)

    # --- signals

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signalled)

    def _signalled(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)
        self.wake.set()

    def handle_signals(self, now: float) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGHUP:
                self.check_config(force=True)
            elif self.stopping is None:
                self.drain(now)
            else:  # a second SIGTERM: the workers stop at once, as one process does
                self.forward(signal.SIGTERM)

    def drain(self, now: float) -> None:
        """SIGTERM: no new workers, the supervisor's copies of the sockets closed (the workers close theirs as they
        stop accepting), every worker told to drain."""
        self.stopping = now
        logger.warning("privproxy: SIGTERM: draining %d workers", len(self.pids()))
        for slot in self.slots:
            slot.restart_at = None
            for *_, s in slot.sockets:
                s.close()
        self.forward(signal.SIGTERM)

    def forward(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                try:
                    slot.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    # --- filters.yaml: validated here, then every worker reloads it, or none does

    def _config_stamp(self) -> tuple[int, int, int] | None:
        if self.config is None:
            return None
        try:
            st = os.stat(self.config)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def check_config(self, force: bool = False) -> None:
        stamp = self._config_stamp()
        if not force and (stamp is None or stamp == self._stamp):
            return
        self._stamp = stamp
        if self.config is None:  # SIGHUP without filters.yaml: the workers re-read their certificate files
            self.forward(signal.SIGHUP)
            return
        try:
            sha = self.hooks.validate(self.config)
        except Exception as e:  # noqa: BLE001 - any refusal keeps every worker on the rules it has
            self.hooks.reload_round(False)
            logger.error("privproxy: %s is invalid, no worker reloads it; the previous rules stay:\n%s",
                         self.config, e)
            return
        logger.warning("privproxy: %s is valid (sha256 %s): reloading %d workers", self.config, sha[:12],
                       len(self.pids()))
        self.reload = Reload(sha, time.monotonic() + RELOAD_WAIT)
        self.forward(signal.SIGHUP)

    def check_reload(self, now: float) -> None:
        r = self.reload
        if r is None:
            return
        states = [self.status(s) for s in self.slots]
        if all(st is not None and st.sha256 == r.sha256 for st in states):
            self.reload, self.sha256 = None, r.sha256
            self.hooks.reload_round(True)
            logger.warning("privproxy: every worker runs the rules with sha256 %s", r.sha256[:12])
        elif now >= r.deadline:
            self.reload = None
            self.hooks.reload_round(False)
            behind = [s.index for s, st in zip(self.slots, states, strict=True) if st is None or st.sha256 != r.sha256]
            logger.error("privproxy: workers %s did not load the rules with sha256 %s (they keep the previous "
                         "rules); see their messages above", behind, r.sha256[:12])

    # --- health

    def live(self) -> tuple[bool, str]:
        now = time.monotonic()
        for slot in self.slots:
            if slot.beat and self.status(slot) is not None and now - slot.beat_seen > STALL_SECONDS:
                return False, f"worker {slot.index} has not reported for {now - slot.beat_seen:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.stopping is not None:
            return False, "not serving (shutting down)"
        for slot in self.slots:
            st = self.status(slot)
            if st is None or not st.ready:
                return False, f"worker {slot.index} is not serving"
        live, reason = self.live()
        return (True, f"{self.n} workers serving") if live else (False, reason)

    def shas(self) -> list[str]:
        """The rules each live worker reports (for privproxy_config_info)."""
        return [st.sha256 for s in self.slots if (st := self.status(s)) is not None and st.sha256]

    # --- the loop

    def run(self, on_ready: Callable[[], None] = lambda: None) -> int:
        """Start, serve until SIGTERM and every worker has drained; the exit status."""
        self.install_signals()
        try:
            if (code := self.start()) is not None:
                return code
            on_ready()
            while True:
                now = time.monotonic()
                self.handle_signals(now)
                self.reap(now)
                self.observe(now)
                if self.stopping is not None:
                    if not self.pids():
                        return self.exit_code
                    if now - self.stopping > self.drain_timeout + 10:  # a worker that does not stop: end it
                        self.forward(signal.SIGKILL)
                else:
                    self.kill_stalled(now)
                    self.restart_due(now)
                    if now >= self._next_poll:
                        self._next_poll = now + POLL_SECONDS
                        self.check_config()
                    self.check_reload(now)
                self.wake.wait(TICK)
                self.wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
            for *_, s in slot.sockets:
                s.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


# --- `privproxy run --workers N` ----------------------------------------------------------------------------------


class PolicyHooks(Hooks):
    """Validation by the same loader the workers use; reports to the supervisor's metrics."""

    def __init__(self, metrics: WorkerMetrics | None, require_secrets: bool) -> None:
        self.metrics = metrics
        self.require_secrets = require_secrets

    def validate(self, path: Path) -> str:
        from privproxy import policy

        new = policy.load(path)
        if self.require_secrets and (missing := policy.missing_secrets(new)):
            raise ValueError(f"{path} names secrets the workers do not have: {'; '.join(missing)}")
        return new.sha256

    def restarted(self) -> None:
        if self.metrics is not None:
            self.metrics.restarted()

    def reload_round(self, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.reload_round(Result.SUCCESS if ok else Result.FAILURE)

    def worker_gone(self, pid: int) -> None:
        if self.metrics is not None:
            self.metrics.worker_gone(pid)


def supervise(n: int, command: Sequence[str], addresses: Sequence[tuple[str, int]], *, config: str | None,
              require_secrets: bool, drain_timeout: float, rotation: str, status: tuple[str, int] | None,
              ready_file: str) -> int:
    """Bind, start N workers running `command`, serve the status port, write the ready file once every worker
    serves, and return when SIGTERM has drained them all. Raises OSError when a listen address cannot be bound."""
    path = Path(config) if config else Path("filters.yaml") if Path("filters.yaml").is_file() else None
    hooks = PolicyHooks(None, require_secrets)
    sup = Supervisor(n, command, addresses, path, hooks, drain_timeout=drain_timeout, rotation=rotation)
    server: StatusServer | None = None
    bound: tuple[str, int] | None = None
    if status is not None:
        hooks.metrics = WorkerMetrics(sup.metrics_dir, sup.pids, sup.shas, n,
                                      lambda: sum(1 for s in sup.slots if (st := sup.status(s)) and st.ready))
        server = StatusServer(hooks.metrics.registry, sup.live, sup.ready)
        try:
            bound = server.start(*status)
        except OSError as e:
            sup.close()
            raise OSError(e.errno, f"--metrics {status[0]}:{status[1]}: {e.strerror}") from None

    def on_ready() -> None:
        for host, port in sup.listen:
            logger.warning("privproxy: %d workers serving on %s", n, listen_argument(host, port), extra=OPERATOR)
        if bound is not None:
            logger.warning("privproxy: metrics of all workers http://%s/metrics", listen_argument(*bound),
                           extra=OPERATOR)
        if ready_file:
            doc = {"pid": os.getpid(), "listen": [list(a) for a in sup.listen],
                   "metrics": list(bound) if bound else None,
                   "workers": sup.pids()}
            tmp = Path(ready_file + ".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, ready_file)

    try:
        return sup.run(on_ready)
    finally:
        if server is not None:
            server.stop()
