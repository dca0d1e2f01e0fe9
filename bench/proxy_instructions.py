"""CPU instructions per request of a whole running proxy (stock mitmdump, privproxy run, the bare Master), counted
by valgrind's callgrind: the noise-free companion of bench/proxy_vs_mitmdump.py, whose seconds on a shared VM
vary by 20 % from one minute to the next.

    python bench/proxy_instructions.py [--requests 200] [--traffic beacons] [--kinds privproxy,mitmdump,bare-master]
                                       [--keep DIR]

Each proxy runs under callgrind in front of the same nginx; a client outside valgrind sends the requests of
bench/traffic.py over TLS on 8 keep-alive connections: 60 to warm up, then the counters are zeroed and
`--requests` more are sent, and the total is divided by them. Everything that runs in the proxy's process counts
(TLS, mitmproxy's core, the hooks, the event loop, the log and metrics), the kernel does not. Instructions are not
seconds: code that misses caches or branch predictions runs slower per instruction (privproxy's filtering runs at
about half the instructions per second of mitmproxy's core), so this tells which of two versions does less work,
not by how much its requests/s grow. PYTHONPATH=<other checkout>/addons counts another version of privproxy.
Takes a few minutes per proxy (valgrind runs Python some 50 times slower); everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import proxy_vs_mitmdump as bench  # noqa: E402
from traffic import mixed  # noqa: E402

WARMUP = 60
CONNECTIONS = 8


def send(port: int, reqs: list, n: int) -> list[int]:
    """`n` requests on CONNECTIONS keep-alive TLS connections, each waiting for its answer; the failed statuses."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    lock, numbers, failed = threading.Lock(), iter(range(n)), []

    def client() -> None:
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=300)
        while True:
            with lock:
                i = next(numbers, None)
            if i is None:
                break
            r = reqs[i % len(reqs)]
            c.request(r.method, r.path, body=r.body.encode() if r.body else None, headers=r.headers)
            resp = c.getresponse()
            resp.read()
            if resp.status >= 400:
                failed.append(resp.status)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def command(kind: str, tmp: Path, upstream: int, port: int) -> list[str]:
    py = sys.executable
    reverse = f"reverse:http://127.0.0.1:{upstream}@127.0.0.1:{port}"
    if kind == "mitmdump":
        return [py, str(Path(py).parent / "mitmdump"), "--mode", reverse, "--set", f"confdir={tmp / 'mitm-conf'}"]
    if kind == "bare-master":
        return [py, str(HERE / "bare_master.py"), reverse, str(tmp / "mitm-conf")]
    return [py, "-m", "privproxy", "run", "--upstream", f"http://127.0.0.1:{upstream}", "--listen",
            f"127.0.0.1:{port}", "--config", str(bench.REPO / "filters.yaml"), "--log-dir", str(tmp / "logs"),
            "--metrics", f"127.0.0.1:{bench.free_port()}", "--confdir", str(tmp / "mitm-conf")]


def count(kind: str, tmp: Path, upstream: int, reqs: list, n: int, keep: Path | None = None) -> tuple[int, int]:
    """(instructions per request, failed requests) of one proxy; the measured dump is copied into `keep`."""
    port, out = bench.free_port(), tmp / f"{kind}.callgrind"
    env = {**os.environ, "PRIVPROXY_SECRET": "bench-secret-0123456789abcdef0123456789", "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                             *command(kind, tmp, upstream, port)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"{kind}.err", "w"), env=env, cwd=tmp)
    try:
        bench.wait_port(port, proc, timeout=900)
        failed = send(port, reqs, WARMUP)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], capture_output=True, check=True, timeout=120)
        failed += send(port, reqs, n)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], capture_output=True, check=True, timeout=120)
        dumps = sorted(glob.glob(f"{out}*"), key=os.path.getmtime)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dumps[-1], keep / f"{kind}.callgrind")
        total = int(re.search(r"^(?:summary|totals): (\d+)", Path(dumps[-1]).read_text(errors="replace"),
                              re.M).group(1))
        return total // n, len(failed)
    finally:
        bench.terminate(proc, signal.SIGTERM, 120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--traffic", choices=("mixed", "beacons", "pages"), default="beacons")
    p.add_argument("--keep", type=Path, help="copy each proxy's measured callgrind dump into this directory "
                   "(for callgrind_annotate)")
    p.add_argument("--kinds", default="privproxy,mitmdump,bare-master",
                   help="comma-separated: privproxy, mitmdump, bare-master")
    args = p.parse_args()
    reqs = [r for r in mixed() if args.traffic == "mixed" or r.beacon == (args.traffic == "beacons")]
    figures: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="privproxy-instructions-") as d:
        tmp = Path(d)
        nginx, upstream = bench.start_nginx(tmp)
        try:
            for kind in args.kinds.split(","):
                per_request, failed = count(kind, tmp, upstream, reqs, args.requests, args.keep)
                if failed:
                    print(f"{kind}: {failed} requests failed: no figure", file=sys.stderr)
                    return 1
                figures[kind] = per_request
                print(f"{kind:12} {per_request:>12,} instructions per request ({args.requests} requests of the "
                      f"{args.traffic} traffic, callgrind)", flush=True)
        finally:
            bench.terminate(nginx, signal.SIGQUIT, 10)
    if "privproxy" in figures and "mitmdump" in figures:
        print(f"stock mitmdump / privproxy: {figures['mitmdump'] / figures['privproxy']:.2f}x (instructions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
