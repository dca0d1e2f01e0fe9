"""`privproxy filter-log [--format F | --regex RE] [--config FILE] [IN [OUT]]`: scrub existing access and error logs."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import time

from privproxy import log_filter
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import PrivproxyError
from privproxy.policy import Policy


def add_parser(sub) -> None:
    p = sub.add_parser("filter-log", help="apply the rules to an existing nginx/Apache/Caddy access log")
    p.add_argument("input", nargs="?", metavar="IN", help="log file to read (default or -: standard input)")
    p.add_argument("output", nargs="?", metavar="OUT", help="file to write (default or -: standard output)")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--format", choices=[f for f in log_filter.FORMATS if f != "regex"], default="combined",
                        help="combined (also Common Log Format), json lines, vhost_combined (Apache, `%%v:%%p` "
                             "first), apache-error or nginx-error (default: combined)")
    layout.add_argument("--regex", metavar="RE",
                        help="any other layout: a Python regular expression with named groups, e.g. "
                             "(?P<client>...) (?P<request>...) (?P<referrer>...) (?P<user_agent>...); groups named "
                             "host/client/ip are truncated, request/path/url and referrer go through the URL rules, "
                             "user_agent is generalized, user/port/cookie become `-`, everything else (and the text "
                             "between groups) goes through the detectors")
    p.add_argument("--config", metavar="FILE", help="filters.yaml (default: ./filters.yaml, else built-in rules)")
    p.add_argument("--quarantine", metavar="FILE",
                   help="write lines that cannot be parsed here, unfiltered, mode 0600 (default: drop them)")
    p.add_argument("--site-host", action="append", default=[], metavar="HOST",
                   help="a host name of the site whose log this is (repeatable; `*.example.com` for subdomains): "
                        "referrers from it are internal and keep their path (filters.yaml `referrer:`), as the "
                        "proxy keeps those from the request's own Host; the default site's `hosts` count too")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--jobs", type=int, default=default_jobs(), metavar="N",
                   help=f"worker processes for a file (default: the CPUs available, here {default_jobs()}); "
                        "a pipe is filtered line by line in one process")
    p.set_defaults(func=cmd)


def with_site_hosts(policy: Policy, hosts: list[str]) -> Policy:
    """The policy with `hosts` added to its default site's (the site a log line without a Host belongs to)."""
    d = policy.sites.default
    extra = tuple(h.strip().lower().rstrip(".") for h in hosts if h.strip())
    return dataclasses.replace(policy, sites=dataclasses.replace(policy.sites, default=dataclasses.replace(
        d, hosts=d.hosts + extra)))


def default_jobs() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(8, os.cpu_count() or 1))


class Progress:
    """A one-line progress bar on a terminal, for a file of known size."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.last = 0.0

    def update(self, done: int, lines: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        frac = min(1.0, done / self.total)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r[{bar:<30}] {frac:6.1%}  {lines:,} lines")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def cmd(args) -> int:
    if args.input == "-":
        args.input = None
    if args.output == "-":
        args.output = None
    fmt = "regex" if args.regex is not None else args.format
    if args.regex is not None:
        try:
            log_filter.compile_regex(args.regex)
        except ValueError as e:
            return fail(f"--regex: {e}")
    try:
        policy = load_policy(args.config)
    except PrivproxyError as e:
        return report(e)
    if args.site_host:
        policy = with_site_hosts(policy, args.site_host)
    try:
        src = open(args.input, "rb") if args.input else sys.stdin.buffer
    except OSError as e:
        return fail(f"{args.input}: {e.strerror}; check the path and permissions")
    try:
        dst = open(args.output, "wb") if args.output else open(sys.stdout.fileno(), "wb", closefd=False)
        quarantine = None
        if args.quarantine:
            fd = os.open(args.quarantine, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            quarantine = open(fd, "w", encoding="utf-8", newline="")
    except OSError as e:
        return fail(f"{e.filename}: {e.strerror}; check the path and permissions")
    filt = log_filter.LogFilter(policy, fmt, regex=args.regex)
    st = os.fstat(src.fileno())
    size = st.st_size if args.input else 0
    progress = Progress(size, bool(args.input) and not args.quiet and sys.stderr.isatty())
    t0 = time.perf_counter()
    done = 0

    def source():
        nonlocal done
        for data in log_filter.blocks(src):
            done += len(data)
            yield data

    # Workers pay off on files; on a pipe (`tail -F | privproxy filter-log`, Apache's piped logs) every line
    # goes out as soon as it is filtered instead of waiting for a block to fill.
    regular = stat.S_ISREG(st.st_mode)

    def spans():
        nonlocal done
        fd = src.fileno()
        start = os.lseek(fd, 0, os.SEEK_CUR)  # standard input may be handed over part-read
        for span in log_filter.spans(fd, start):
            done = span[1] - start
            yield span
        # Consumed, as a read would leave it: `{ privproxy filter-log; next; } < log` must not give `next` it again
        os.lseek(fd, start + done, os.SEEK_SET)

    try:
        if args.jobs > 1 and regular:
            results = log_filter.run_parallel(policy, fmt, src.fileno(), spans(), args.jobs, args.regex)
        else:
            log_filter.quiet_gc()
            results = ((*log_filter.filter_block(filt, data), None) for data in source())
        for kept, rejected, part in results:
            if part is not None:
                log_filter.merge(filt.stats, part)
            else:
                filt.check_period()
            dst.write(kept)
            if quarantine and rejected:
                quarantine.writelines(rejected)
            progress.update(done, filt.stats.lines)
            if not regular:
                dst.flush()
        dst.flush()
    except BrokenPipeError:  # `| head`: the reader is gone, which is not an error of ours
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        progress.update(done, filt.stats.lines, force=True)
        progress.close()
        if quarantine:
            quarantine.close()
        if args.output:
            dst.close()
    if not args.quiet:
        summary(filt.stats, time.perf_counter() - t0)
    return 0


def summary(st: log_filter.Stats, seconds: float) -> None:
    rate = st.lines / seconds if seconds > 0 else 0
    w = sys.stderr.write
    w(f"privproxy filter-log: {st.lines:,} lines read, {st.written:,} written, {st.unparsed:,} not parsed "
      f"(not written) in {seconds:.2f} s ({rate:,.0f} lines/s)\n")
    for reason, n in st.reasons.most_common():
        w(f"  not parsed, {reason}: {n:,}\n")
    if st.rules:
        w("  fields changed per rule:\n")
        for rule, n in sorted(st.rules.items(), key=lambda kv: (-kv[1], kv[0])):
            w(f"    {rule:<32} {n:,}\n")
