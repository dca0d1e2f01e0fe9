"""filter-log against anonip on the same generated Combined Log, in one run: python bench/filter_log_vs_anonip.py

Installs nothing: run it in the project's venv after `pip install anonip` (scripts/bench-filter-log does both).
Prints lines/s for both, and the ratio (issue 6 asks for >= 2x while privproxy does far more per line).
`--before REV` also runs filter-log as it was at a git revision, in the same rounds: a change is measured
against its parent on the same machine minutes apart, never against figures from another day.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - t0


def checkout(rev: str, into: Path) -> Path:
    """The package and filters.yaml of `rev`, unpacked (git archive: the working tree is not touched)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "addons", "filters.yaml"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def filter_log(addons: Path, config: str, log: Path, out: Path, jobs: int | None = None) -> list[str]:
    """filter-log from a given package directory, as an operator runs it: the log on standard input, the result
    on standard output."""
    code = f"import sys; sys.path.insert(0, {str(addons)!r}); from privproxy.cli import main; sys.exit(main())"
    args = ["--quiet", *(["--jobs", str(jobs)] if jobs else []), "--config", config]
    return ["sh", "-c", f'exec "$@" < {shq(log)} > {shq(out)}', "sh", sys.executable, "-c", code, "filter-log",
            *args]


def shq(p: Path) -> str:
    return "'" + str(p).replace("'", "'\\''") + "'"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--config", default=str(REPO / "filters.yaml"))
    ap.add_argument("--before", metavar="REV", help="also run filter-log as of this git revision (e.g. HEAD)")
    ap.add_argument("--spellings", action="store_true", help="generate the log with genlog.py --spellings")
    args = ap.parse_args()
    anonip = shutil.which("anonip") or str(Path(sys.executable).with_name("anonip"))
    if not Path(anonip).exists():
        print("anonip is not installed: pip install anonip", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        # Compiled once, outside the repository, for every tree alike: with PYTHONDONTWRITEBYTECODE set (as in
        # some CI images) each run would otherwise compile the package again and time the compiler.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PRIVPROXY_SECRET=os.environ.get("PRIVPROXY_SECRET", "bench-secret"),
                   PYTHONPYCACHEPREFIX=str(t / "pycache"))
        log = t / "access.log"
        with open(log, "w") as f:
            subprocess.run([sys.executable, str(HERE / "genlog.py"), str(args.lines),
                            *(["--spellings"] if args.spellings else [])], stdout=f, check=True)
        out = t / "out.log"
        runs = {
            "anonip": [anonip, "--input", str(log), "-o", str(out)],
            "privproxy": filter_log(REPO / "addons", args.config, log, out),
            "privproxy1": filter_log(REPO / "addons", args.config, log, out, jobs=1),
        }
        if args.before:
            old = checkout(args.before, t / "before")
            runs["before"] = filter_log(old / "addons", str(old / "filters.yaml"), log, out)
            runs["before1"] = filter_log(old / "addons", str(old / "filters.yaml"), log, out, jobs=1)
        for name, cmd in runs.items():  # warm-up, untimed: bytecode written, files in the page cache
            if name != "anonip":
                timed(cmd, env)
        # Interleaved rounds: this kind of machine drifts by a fifth within a minute (and by half when a
        # neighbour is busy), and a drift between two blocks of runs would be read as a difference between the
        # tools. Each round's ratios compare runs made seconds apart; the median of them is the figure to quote.
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, cmd in runs.items():
                times[name].append(timed(cmd, env))
    n = args.lines
    a = times["anonip"]
    labels = {"anonip": "anonip (IP masking only)", "privproxy": "privproxy filter-log (all rules)",
              "privproxy1": "privproxy filter-log --jobs 1", "before": f"filter-log at {args.before}",
              "before1": f"filter-log at {args.before} --jobs 1"}
    print(f"lines: {n:,}  cpus: {len(os.sched_getaffinity(0))}  rounds: {args.repeat}")
    for name, ts in times.items():
        ratios = [x / y for x, y in zip(a, ts, strict=True)]
        best = min(ts)
        extra = "" if name == "anonip" else (f"  vs anonip: median {statistics.median(ratios):.2f}x "
                                             f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"{labels[name] + ':':40} {n / best:9,.0f} lines/s best ({best:.2f} s){extra}")
    if args.before:
        gain = [b / p for b, p in zip(times["before"], times["privproxy"], strict=True)]
        print(f"before / now, per round: {', '.join(f'{g:.2f}' for g in gain)} (above 1: now is faster)")
    print(f"ratio privproxy / anonip: {min(a) / min(times['privproxy']):.2f}x best-of "
          f"(one process: {min(a) / min(times['privproxy1']):.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
