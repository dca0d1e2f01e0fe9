"""`privproxy tune [--config FILE] (--har FILE | --flows FILE | --log FILE [--format combined|json]) [--json]`:
the fields no rule classifies in real traffic, by frequency, with the rule each would get (names, never values)."""

from __future__ import annotations

import json
import sys

from privproxy import explain, tune
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import PrivproxyError


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="list query parameters, cookies and beacon fields no rule classifies in a HAR "
                                    "file, a flow dump or an access log, with the rule each would get")
    p.add_argument("--config", metavar="FILE", help="filters.yaml (default: ./filters.yaml, else the built-in rules)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--har", metavar="FILE", help="a HAR file exported from browser devtools")
    src.add_argument("--flows", metavar="FILE", help="a mitmproxy flow dump (mitmdump -w FILE)")
    src.add_argument("--log", metavar="FILE", help="an access log before filtering (- for standard input)")
    p.add_argument("--format", choices=("combined", "json"), default="combined",
                   help="the --log's layout: combined (also Common Log Format) or json lines (default: combined)")
    p.add_argument("--limit", type=int, default=200_000, metavar="N",
                   help="read at most N requests (default 200,000): a sample says which fields are unknown")
    p.add_argument("--json", action="store_true", help="one JSON object: the fields, the heuristic, the snippet")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    try:
        policy = load_policy(args.config)
    except PrivproxyError as e:
        return report(e)
    tuner = tune.Tuner(policy)
    src = args.har or args.flows or args.log
    try:
        for sample in _samples(args):
            if tuner.requests >= args.limit:
                break
            tuner.add(sample)
    except Exception as e:  # noqa: BLE001 - an unreadable input is the user's to fix: say which and how, no traceback
        hint = ("export the HAR again from the Network tab" if args.har else "write it with mitmdump -w FILE"
                if args.flows else "check the path and --format")
        return fail(f"{src}: cannot read it ({type(e).__name__}); {hint}")
    if tuner.requests == 0:
        return fail(f"{src}: no requests found" + ("; check --format" if args.log else ""))
    if args.json:
        print(json.dumps(tune.as_json(tuner), ensure_ascii=False))
    else:
        sys.stdout.write(tune.text(tuner))
    return 0


def _samples(args):
    if args.har:
        with open(args.har, encoding="utf-8") as f:
            yield from explain.har_samples(json.load(f))
    elif args.flows:
        from privproxy.mitm import flowfile  # only this input needs mitmproxy

        yield from flowfile.samples(args.flows)
    else:
        f = sys.stdin if args.log == "-" else open(args.log, encoding="utf-8", errors="replace")
        try:
            yield from tune.log_samples(f, args.format)
        finally:
            if f is not sys.stdin:
                f.close()
