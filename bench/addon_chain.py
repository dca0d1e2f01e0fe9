"""privproxy's own cost per request, without the network: the mixed traffic of bench/traffic.py driven through
the real addon chain (mitmproxy's test helpers) with the shipped rules, a log directory and metrics.

    python bench/addon_chain.py [--requests 20000] [--repeat 5] [--profile] [--traffic mixed|beacons|pages]
    python bench/addon_chain.py --instructions [--requests 280] [--traffic beacons]

Prints microseconds of CPU per request (best of --repeat), which is what privproxy adds to mitmproxy's own
work; --profile prints the hottest functions (by own time; PRIVPROXY_PROFILE_SORT=cumulative and
PRIVPROXY_PROFILE_ROWS=N for whole subtrees, more rows). On a shared VM the best of several runs of the same code still
differs by about 10 %, more than most single changes gain: --instructions counts the CPU instructions of the
requests instead (valgrind's callgrind, collecting only inside the measured loop, hash seed fixed), which come
out the same to 0.1 % run after run whatever else the machine does. Two versions compare by that count
(PYTHONPATH=<other checkout>/addons for the other one). It takes a minute or two: valgrind runs Python 50 times
slower.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import itertools
import math
import os
import re
import shutil
import subprocess
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from traffic import mixed  # noqa: E402

from mitmproxy import http  # noqa: E402
from mitmproxy.test import taddons, tflow, tutils  # noqa: E402

import privproxy.mitm  # noqa: E402
from privproxy.mitm.shared import SharedState  # noqa: E402

HOOKS = ("requestheaders", "request", "responseheaders", "response")
PAGE = b"<!doctype html><title>shop</title>" + b"<p>product text</p>" * 300


def flows(n: int, traffic: str = "mixed") -> list[http.HTTPFlow]:
    reqs = [r for r in mixed() if traffic == "mixed" or r.beacon == (traffic == "beacons")]
    out = []
    for i in range(n):
        r = reqs[i % len(reqs)]
        hdrs = http.Headers([(b"host", b"shop.example")] + [(k.encode(), v.encode()) for k, v in r.headers.items()]
                            + ([(b"content-length", str(len(r.body)).encode())] if r.body else []))
        f = tflow.tflow(req=tutils.treq(method=r.method.encode(), path=r.path.encode(), headers=hdrs,
                                        content=r.body.encode(), host="127.0.0.1", port=8080), resp=False)
        f.client_conn.peername = (f"198.51.100.{i % 250 + 1}", 40000 + i % 20000)
        f.client_conn.timestamp_tls_setup = 946681201
        f.client_conn.tls_version = "TLSv1.3"
        out.append(f)
    return out


def origin_response(f: http.HTTPFlow) -> http.Response:
    beacon = f.request.path.split("?")[0] not in ("/", "/products", "/products/item-17", "/newsletter",
                                                   "/static/app.js", "/health/consultation")
    return tutils.tresp(status_code=204 if beacon else 200, content=b"" if beacon else PAGE,
                        headers=http.Headers([] if beacon else [(b"set-cookie", b"_ga=GA1.1.1.2; Path=/"),
                                                                (b"content-type", b"text/html")]))


def run(chain: list[object], fs: list[http.HTTPFlow]) -> float:
    """CPU seconds in privproxy's hooks only; the origin's responses are made before the clock starts."""
    hooks = chain_hooks(chain)
    answers = [origin_response(f) for f in fs]
    t0 = time.process_time()
    for f, answer in zip(fs, answers, strict=True):
        through_chain(hooks, f, answer)
    return time.process_time() - t0


def chain_hooks(chain: list[object]) -> list[list]:
    """Each of HOOKS's methods of the chain, in order."""
    return [[getattr(a, h) for a in chain if hasattr(a, h)] for h in HOOKS]


def through_chain(hooks: list[list], f: http.HTTPFlow, answer: http.Response) -> None:
    """One flow through the hooks as mitmproxy calls them: `answer` stands for the origin's unless a request hook
    answered already."""
    for fn in hooks[0]:
        fn(f)
    if f.response is None:
        for fn in hooks[1]:
            fn(f)
        if f.response is None:
            f.response = answer
    for fn in hooks[2]:
        fn(f)
    for fn in hooks[3]:
        fn(f)


def counted(chain: list[object], fs: list[http.HTTPFlow], rt: SharedState) -> None:
    """The flows through the chain inside math.fsum: callgrind collects only there (--toggle-collect=math_fsum),
    a C function that neither privproxy nor mitmproxy calls on a request's way. The metric increments the
    requests left pending (metrics.Tally, applied at a scrape) are applied inside too: they are the requests'
    work. Only this thread is counted (callgrind's collection is per thread): the chain runs on it."""
    hooks = chain_hooks(chain)
    answers = [origin_response(f) for f in fs]

    def one(f: http.HTTPFlow, answer: http.Response) -> float:
        through_chain(hooks, f, answer)
        return 0.0

    def pending() -> float:
        apply_pending(rt)
        return 0.0

    math.fsum(itertools.chain((one(f, a) for f, a in zip(fs, answers, strict=True)), (pending() for _ in (0,))))


def apply_pending(rt: SharedState) -> None:
    tally = getattr(rt.metrics, "tally", None)  # a checkout before metrics.Tally applied each increment at once
    if tally is not None:
        tally.flush()


def instructions(args: argparse.Namespace) -> int:
    """This script again under callgrind; prints the instructions per request it counted."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("--instructions needs valgrind (Debian package valgrind)", file=sys.stderr)
        return 2
    cmd = [valgrind, "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=math_fsum",
           "--callgrind-out-file=/dev/null", sys.executable, __file__, "--requests", str(args.requests),
           "--traffic", args.traffic, "--counted"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    m = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or m is None:
        print(done.stdout, done.stderr[-2000:], sep="\n", file=sys.stderr)
        return 1
    if int(m.group(1)) == 0:  # collection never switched on: the interpreter's math module has no symbols
        print("callgrind counted nothing: math_fsum, where collection starts, is not among the symbols of this "
              "Python (a stripped build); use a Python with symbols (pyenv builds keep them)", file=sys.stderr)
        return 1
    print(f"privproxy addon chain: {int(m.group(1)) // args.requests} instructions per request "
          f"({args.requests} requests of the {args.traffic} traffic, callgrind)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--traffic", choices=("mixed", "beacons", "pages"), default="mixed",
                    help="the requests: the mix (two pages per beacon, default), or only one kind")
    ap.add_argument("--instructions", action="store_true",
                    help="count CPU instructions per request under valgrind instead of timing (see above)")
    ap.add_argument("--counted", action="store_true", help=argparse.SUPPRESS)  # the run under valgrind
    args = ap.parse_args()
    if args.instructions:
        return instructions(args)
    os.environ.setdefault("PRIVPROXY_SECRET", "bench-secret-0123456789abcdef0123456789")
    rt = SharedState()
    chain = privproxy.mitm.addons(rt)
    with tempfile.TemporaryDirectory() as d, taddons.context(*chain) as tctx:
        tctx.configure(chain[0], privproxy_config=str(HERE.parent / "filters.yaml"), privproxy_log_dir=d)
        assert rt.policy is not None, "the rules did not load"
        best = float("inf")
        if args.counted:
            fs = flows(100 + args.requests, args.traffic)
            run(chain, fs[:100])  # warm: caches and the code's first paths; the counted ones are other visitors
            apply_pending(rt)
            counted(chain, fs[100:], rt)
        for _ in range(0 if args.counted else args.repeat):
            fs = flows(args.requests, args.traffic)
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
            best = min(best, run(chain, fs))
            if args.profile:
                prof.disable()
                order = os.environ.get("PRIVPROXY_PROFILE_SORT", "tottime")
                pstats.Stats(prof).sort_stats(order).print_stats(int(os.environ.get("PRIVPROXY_PROFILE_ROWS", "25")))
                if os.environ.get("PRIVPROXY_PROFILE_CALLERS"):
                    pstats.Stats(prof).print_callers(os.environ["PRIVPROXY_PROFILE_CALLERS"])
                break
        failed = sum(s.value for m in rt.metrics.registry.collect() if m.name == "privproxy_scrub_failures"
                     for s in m.samples)
        assert not failed, f"{failed} filter failures: the benchmark would measure the fail-closed path"
        for a in chain:
            if hasattr(a, "done"):
                closing = a.done()
                if inspect.iscoroutine(closing):  # the gateway closes its vendor pools
                    asyncio.run(closing)
    if args.counted:
        return 0
    print(f"privproxy addon chain: {best / args.requests * 1e6:.1f} us CPU per request "
          f"({args.requests} requests of the {args.traffic} traffic, best of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
