"""Stock `mitmdump` in reverse mode against `privproxy run` with the full shipped rules, in one run, in front of
the same nginx, under the same wrk load of mixed pages and beacons of every vendor over TLS.

    python bench/proxy_vs_mitmdump.py [--seconds 10] [--rounds 3] [--connections 16] [--json FILE]
    python bench/proxy_vs_mitmdump.py --workers [...]   # privproxy run --workers 1 against --workers 2
    python bench/proxy_vs_mitmdump.py --traffic beacons [...]   # only the beacons (or only the pages)
    python bench/proxy_vs_mitmdump.py --floor [...]   # also a bare mitmproxy Master (bench/bare_master.py)
    (scripts/bench-proxy installs nginx and wrk from Debian and runs it in the project's venv)

Prints requests/s of each, the ratio (issue 8 asks privproxy >= 1.2x stock mitmdump), p50/p99 latency added
over nginx alone, proxy CPU time per request, and privproxy's own filtering time per request. Rounds
alternate the order; the median round counts. Everything listens on 127.0.0.1; every run is bounded in time.
`privproxy run` (and the bare Master) leave out mitmproxy's debug-only type check of each request's and response's
fields, which `python -O` would also leave out (with every assert); stock mitmdump runs as installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from traffic import mixed  # noqa: E402

# The collection paths of the eleven vendors' beacons in the mix: nginx answers them 204, as a collector would.
BEACONS = (r"^/(g/collect|mp/collect|collect|matomo\.php|com\.snowplowanalytics\.snowplow/tp2|v1/|track|2/httpapi"
           r"|batch/|tr|b/ss/|api/event)")
NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location ~ {beacons} {{
            return 204;
        }}
        location / {{
            try_files /index.html =404;
            add_header Set-Cookie "_ga=GA1.1.918273645.1700000000; Path=/; Max-Age=63072000";
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def start_nginx(tmp: Path) -> tuple[subprocess.Popen, int]:
    """nginx on a free loopback port serving the sample page from tmp/www (tmp must be a fresh directory whose
    parents others may traverse, e.g. under /tmp: a worker started by root runs as nobody)."""
    tmp.chmod(0o755)
    (tmp / "www").mkdir()
    (tmp / "www" / "index.html").write_text("<!doctype html><title>shop</title>" + "<p>product text</p>" * 300)
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port, beacons=BEACONS))
    proc = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port


def terminate(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send `sig` (a graceful stop), wait up to `timeout` s, then kill."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lua_script(path: Path, traffic: str = "mixed") -> None:
    def s(text: str) -> str:
        return "[==[" + text + "]==]"

    lines = ["local reqs = {}", "local i = 0", "init = function(args)"]
    for r in mixed():
        if traffic != "mixed" and r.beacon != (traffic == "beacons"):
            continue
        headers = "{" + ", ".join(f"[ {s(k)} ] = {s(v)}" for k, v in r.headers.items()) + "}"
        body = s(r.body) if r.body else "nil"
        lines.append(f"  reqs[#reqs + 1] = wrk.format({s(r.method)}, {s(r.path)}, {headers}, {body})")
    lines += ["end", "request = function()", "  i = i % #reqs + 1", "  return reqs[i]", "end",
              # the first failure of each run is printed whole, so a broken setup is seen, not averaged away
              "local shown = false", "response = function(status, headers, body)",
              "  if status >= 400 and not shown then shown = true; print('FIRST-ERROR', status, body) end", "end"]
    path.write_text("\n".join(lines) + "\n")


def wrk(url: str, script: Path, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "--timeout", "5s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        lat[pct] = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        first = re.search(r"^FIRST-ERROR.*$", out, re.M)
        print(f"bench: {url}: {errors.group(1)} failed responses; first: {first.group(0)[:300] if first else '?'}",
              file=sys.stderr)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "requests": total,
            "non_2xx": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1).strip()
            if socket_errors else ""}


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([\d.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


class Proxy:
    def __init__(self, kind: str, tmp: Path, upstream: int) -> None:
        self.kind, self.port = kind, free_port()
        env = {**os.environ, "PRIVPROXY_SECRET": "bench-secret-0123456789abcdef0123456789"}
        bindir = Path(sys.executable).parent
        self.metrics_port = None
        if kind == "bare-master":
            # the floor: privproxy run's Master, set up the same way, without privproxy's addons
            cmd = [sys.executable, str(HERE / "bare_master.py"),
                   f"reverse:http://127.0.0.1:{upstream}@127.0.0.1:{self.port}", str(tmp / "mitm-conf")]
        elif kind.startswith("mitmdump"):
            # stock: as installed, no scripts; it prints one line per flow (to /dev/null here).
            # -q: the same with that printing off, the stricter comparison.
            cmd = [str(bindir / "mitmdump"), *(["-q"] if kind == "mitmdump-q" else []),
                   "--mode", f"reverse:http://127.0.0.1:{upstream}@127.0.0.1:{self.port}",
                   "--set", f"confdir={tmp / 'mitm-conf'}"]
        else:
            self.metrics_port = free_port()
            self.log_dir = Path(tempfile.mkdtemp(prefix=f"logs-{kind}-", dir=tmp))
            ready = self.log_dir / "ready.json"
            workers = kind.partition("-w")[2] or "1"  # privproxy-w2: --workers 2
            cmd = [str(bindir / "privproxy"), "run", "--upstream", f"http://127.0.0.1:{upstream}",
                   "--listen", f"127.0.0.1:{self.port}", "--config", str(REPO / "filters.yaml"),
                   "--log-dir", str(self.log_dir), "--metrics", f"127.0.0.1:{self.metrics_port}",
                   "--confdir", str(tmp / "mitm-conf"), "--workers", workers, "--ready-file", str(ready)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{kind}.err", "ab"), env=env)
        if self.metrics_port is not None:  # with workers the socket is bound before they serve: the ready file
            deadline = time.monotonic() + 60
            while not ready.exists() and self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        wait_port(self.port, self.proc)

    def cpu(self) -> float:
        """CPU seconds of the proxy: the process, or the supervisor and all its workers."""
        if self.kind.startswith("privproxy-w"):
            return metric(self.metrics(), "process_cpu_seconds_total")
        return cpu_seconds(self.proc.pid)

    def records(self) -> int:
        path = self.log_dir / "access.jsonl"
        return sum(1 for _ in path.open("rb")) if path.exists() else 0

    def metrics(self) -> str:
        if self.metrics_port is None:
            return ""
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def stop(self) -> None:
        terminate(self.proc, signal.SIGTERM, 20)


def measure(kind: str, tmp: Path, upstream: int, script: Path, args) -> dict[str, float]:
    p = Proxy(kind, tmp, upstream)
    try:
        url = f"https://127.0.0.1:{p.port}"
        wrk(url, script, args.warmup, args.connections)
        m0, cpu0 = p.metrics(), p.cpu()
        r = wrk(url, script, args.seconds, args.connections)
        cpu1, m1 = p.cpu(), p.metrics()
        r["cpu_ms_per_request"] = (cpu1 - cpu0) * 1000 / max(1, r["requests"])
        if m1:
            count, total = "privproxy_filter_duration_seconds_count", "privproxy_filter_duration_seconds_sum"
            n = metric(m1, count) - metric(m0, count)
            s = metric(m1, total) - metric(m0, total)
            r["filter_ms_per_request"] = s * 1000 / max(1, n)
        if kind.startswith("privproxy-w"):
            time.sleep(1.0)  # the requests wrk left behind end (client_closed) and are counted
            r["counted"] = sum(float(line.rsplit(" ", 1)[1]) for line in p.metrics().splitlines()
                               if line.startswith("privproxy_requests_total{"))
    finally:
        p.stop()
    if kind.startswith("privproxy-w"):
        r["records"] = p.records()  # after the drain: every record flushed
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--workers", action="store_true",
                    help="compare privproxy run --workers 1 and --workers 2 (requests/s, CPU per request, and that "
                         "the access log and the metrics count every request once) instead of stock mitmdump")
    ap.add_argument("--floor", action="store_true",
                    help="also run a bare mitmproxy Master (privproxy run's core without privproxy's addons): what "
                         "any addon on mitmproxy's core could serve at best")
    ap.add_argument("--traffic", choices=("mixed", "beacons", "pages"), default="mixed",
                    help="the requests wrk sends: the mix (two pages per beacon, default), or only one kind")
    args = ap.parse_args()
    if args.floor and args.workers:
        ap.error("--floor compares with stock mitmdump; --workers compares privproxy with itself: one at a time")
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing: sudo apt-get install {tool} (scripts/bench-proxy does it)",
                  file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="privproxy-bench-") as d:
        tmp = Path(d)
        nginx, nport = start_nginx(tmp)
        try:
            script = tmp / "mixed.lua"
            lua_script(script, args.traffic)
            direct = wrk(f"http://127.0.0.1:{nport}", script, args.seconds / 2, args.connections)
            kinds = (("privproxy-w1", "privproxy-w2") if args.workers
                     else ("mitmdump", "mitmdump-q", "privproxy", *(("bare-master",) if args.floor else ())))
            rounds: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
            for i in range(args.rounds):
                order = kinds if i % 2 == 0 else tuple(reversed(kinds))
                for kind in order:
                    rounds[kind].append(measure(kind, tmp, nport, script, args))
                    print(f"round {i + 1} {kind:12s} {rounds[kind][-1]['rps']:8.0f} req/s", file=sys.stderr)
        finally:
            terminate(nginx, signal.SIGQUIT, 10)

    def median(kind: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in rounds[kind])

    if args.workers:
        return report_workers(args, direct, rounds, median)

    ratio = median("privproxy", "rps") / median("mitmdump", "rps")
    ratio_q = median("privproxy", "rps") / median("mitmdump-q", "rps")
    # Each round runs them all within a minute; a shared VM's speed drifts between rounds more than
    # within one, so the ratio inside each round is the steadier figure.
    per_round = [p["rps"] / m["rps"] for p, m in zip(rounds["privproxy"], rounds["mitmdump"], strict=True)
                 if m["rps"] > 0]
    import mitmproxy.version
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(), "mitmproxy": mitmproxy.version.VERSION,
        "requests_mix": f"{len(mixed())} requests per cycle (pages and beacons of 11 vendors), TLS, "
                        f"{args.connections} connections, {args.seconds:g} s x {args.rounds} rounds",
        "nginx_direct": direct, "rounds": rounds, "ratio": ratio, "ratio_vs_quiet": ratio_q,
        "ratio_per_round": per_round,
    }
    print(f"{'':22s}{'req/s':>9s}{'p50 +ms':>9s}{'p99 +ms':>9s}{'CPU ms/req':>12s}{'filter ms/req':>15s}")
    labels = {"mitmdump": "mitmdump (stock)", "mitmdump-q": "mitmdump -q", "privproxy": "privproxy run",
              "bare-master": "bare mitmproxy Master"}
    for kind in kinds:
        print(f"{labels[kind]:22s}{median(kind, 'rps'):9.0f}"
              f"{median(kind, 'p50_ms') - direct['p50_ms']:9.2f}{median(kind, 'p99_ms') - direct['p99_ms']:9.2f}"
              f"{median(kind, 'cpu_ms_per_request'):12.3f}"
              + (f"{median(kind, 'filter_ms_per_request'):15.3f}" if kind == "privproxy" else f"{'-':>15s}"))
    print(f"nginx alone: {direct['rps']:.0f} req/s, p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms")
    print(f"ratio privproxy / stock mitmdump: {ratio:.2f}x (target >= 1.2x); "
          f"privproxy / mitmdump -q: {ratio_q:.2f}x")
    if per_round:
        print(f"per round: {', '.join(f'{r:.2f}x' for r in per_round)}; median {statistics.median(per_round):.2f}x")
    if args.floor:
        floor = [b["rps"] / m["rps"] for b, m in zip(rounds["bare-master"], rounds["mitmdump"], strict=True)
                 if m["rps"] > 0]
        result["floor_ratio_per_round"] = floor
        print(f"bare mitmproxy Master / stock mitmdump per round: {', '.join(f'{r:.2f}x' for r in floor)}; "
              f"privproxy's own CPU per request over the bare Master: "
              f"{median('privproxy', 'cpu_ms_per_request') - median('bare-master', 'cpu_ms_per_request'):.3f} ms")
    errors = {k: [(r["non_2xx"], r["socket_errors"]) for r in v if r["non_2xx"] or r["socket_errors"]]
              for k, v in rounds.items()}
    if any(errors.values()):
        print(f"errors: {errors}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def report_workers(args, direct, rounds, median) -> int:
    """--workers: 2 workers against 1 in the same run; each round's ratio, and the log and metric counts."""
    w1, w2 = rounds["privproxy-w1"], rounds["privproxy-w2"]
    per_round = [b["rps"] / a["rps"] for a, b in zip(w1, w2, strict=True) if a["rps"] > 0]
    print(f"{'':22s}{'req/s':>9s}{'p50 +ms':>9s}{'p99 +ms':>9s}{'CPU ms/req':>12s}{'filter ms/req':>15s}")
    for kind, label in (("privproxy-w1", "privproxy --workers 1"), ("privproxy-w2", "privproxy --workers 2")):
        print(f"{label:22s}{median(kind, 'rps'):9.0f}"
              f"{median(kind, 'p50_ms') - direct['p50_ms']:9.2f}{median(kind, 'p99_ms') - direct['p99_ms']:9.2f}"
              f"{median(kind, 'cpu_ms_per_request'):12.3f}{median(kind, 'filter_ms_per_request'):15.3f}")
    print(f"nginx alone: {direct['rps']:.0f} req/s, p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms")
    ratio = median("privproxy-w2", "rps") / median("privproxy-w1", "rps")
    print(f"ratio --workers 2 / --workers 1: {ratio:.2f}x (issue 22 asks >= 1.3x on 2 cores with nginx and wrk)")
    print(f"per round: {', '.join(f'{r:.2f}x' for r in per_round)}; median {statistics.median(per_round):.2f}x")
    mismatched = [(k, i + 1, r["records"], r["counted"]) for k, v in rounds.items() for i, r in enumerate(v)
                  if r["records"] != r["counted"]]
    print("access-log records == privproxy_requests_total in every run" if not mismatched
          else f"records != counted (kind, round, records, counted): {mismatched}")
    errors = {k: [(r["non_2xx"], r["socket_errors"]) for r in v if r["non_2xx"] or r["socket_errors"]]
              for k, v in rounds.items()}
    if any(errors.values()):
        print(f"errors: {errors}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "requests_mix": f"{len(mixed())} requests per cycle (pages and beacons of 11 vendors), TLS, "
                            f"{args.connections} connections, {args.seconds:g} s x {args.rounds} rounds",
            "nginx_direct": direct, "rounds": rounds, "ratio": ratio, "ratio_per_round": per_round}, indent=2))
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
