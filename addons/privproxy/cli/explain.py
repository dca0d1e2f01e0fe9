"""`privproxy explain [--config FILE] (URL | --har FILE | --flows FILE)`: each field before and after, and why."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator

from privproxy import explain as core
from privproxy import truncate
from privproxy.access_log import formats
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import PrivproxyError

MAX_SHOWN = 120  # long values (tokens, base64) are cut in the table; --json prints them whole


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="show what the rules do to a URL, a HAR file or a mitmproxy flow dump")
    p.add_argument("url", nargs="?", help="a URL (absolute, or a path with query)")
    p.add_argument("--config", metavar="FILE", help="filters.yaml (default: ./filters.yaml, else the built-in rules)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--har", metavar="FILE", help="a HAR file exported from browser devtools")
    src.add_argument("--flows", metavar="FILE", help="a mitmproxy flow dump (mitmdump -w FILE)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="a request header for URL, e.g. -H 'Cookie: _ga=GA1.1.1.2' (repeatable)")
    p.add_argument("-X", "--method", default="GET", help="the method for URL (default GET)")
    p.add_argument("-d", "--data", metavar="BODY", help="a request body for URL (a beacon's POST body); "
                   "@FILE reads it from a file")
    p.add_argument("--country", default="", metavar="CC",
                   help="the visitor's country for region rules (default: unknown, which gets every rule)")
    p.add_argument("--client", default="", metavar="ADDRESS",
                   help="the visitor's address as the proxy sees it (default: unknown; X-Forwarded-For and the "
                        "record's client are then shown as null)")
    p.add_argument("--json", action="store_true", help="one JSON object per request: what is forwarded (target, "
                   "headers, body), the access-log record, the changes and the fields no rule classifies")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    if sum(x is not None for x in (args.url, args.har, args.flows)) != 1:
        return fail("explain needs exactly one of: URL, --har FILE, --flows FILE")
    try:
        policy = load_policy(args.config)
    except PrivproxyError as e:
        return report(e)
    try:
        samples = list(_samples(args))
    except (OSError, ValueError, KeyError, TypeError) as e:
        src = args.har or args.flows
        return fail(f"{src}: cannot read it ({type(e).__name__}: {e}); "
                    f"{'export the HAR again from the Network tab' if args.har else 'write it with mitmdump -w FILE'}")
    if not samples:
        return fail("no requests found")
    if args.client and truncate.parse_ip(args.client) is None:
        return fail(f"--client {args.client!r}: not an IP address (e.g. --client 203.0.113.7)")
    for s in samples:
        ex = core.explain(policy, s, args.country.upper(), args.client)
        if args.json:
            print(json.dumps(_as_json(policy, ex), ensure_ascii=False))
        else:
            _print(policy, ex)
    return 0


def _samples(args) -> Iterator[core.Sample]:
    if args.url is not None:
        headers = []
        for h in args.header:
            name, sep, value = h.partition(":")
            if not sep:
                raise ValueError(f"-H {h!r}: write 'Name: value'")
            headers.append((name.strip(), value.strip()))
        body = b""
        if args.data is not None:
            body = open(args.data[1:], "rb").read() if args.data.startswith("@") else args.data.encode()
        method = args.method.upper() if args.data is None or args.method.upper() != "GET" else "POST"
        yield core.Sample(method, args.url, tuple(headers), body=body)
    elif args.har:
        with open(args.har, encoding="utf-8") as f:
            yield from core.har_samples(json.load(f))
    else:
        from privproxy.mitm import flowfile  # only this input needs mitmproxy

        yield from flowfile.samples(args.flows)


def _cut(v: str | None) -> str:
    if v is None:
        return "(removed)"
    return v if len(v) <= MAX_SHOWN else v[:MAX_SHOWN] + f"... ({len(v)} chars)"


def _print(policy, ex: core.Explanation) -> None:
    out = sys.stdout
    out.write(f"{ex.sample.method} {ex.sample.url}\n")
    if not ex.changes:
        out.write("  no rule changes anything here\n")
    for c in ex.changes:
        mode = " [report-only: not applied]" if c.report_only else ""
        out.write(f"  {c.scope:<10} {c.field or '-'}\n")
        out.write(f"      before: {_cut(c.before)}\n      after:  {_cut(c.after)}\n")
        src = core.rule_source(policy, c.rule)
        out.write(f"      rule:   {c.rule} ({c.action}){mode}{'  ' + src if src else ''}\n")
    if ex.kept:
        out.write("  unchanged: " + ", ".join(f"{scope} {name}" for scope, name in ex.kept) + "\n")
    if ex.unclassified:
        out.write("  no rule names: " + ", ".join(f"{scope} {name}" for scope, name in ex.unclassified) + "\n")
    d = ex.consent
    if d.state == "valid":
        out.write(f"  consent:             valid: member {d.member}, scopes {', '.join(sorted(d.scopes))}"
                  f"{' (linked log)' if d.linked else ''}\n")
    elif d.state != "none":
        out.write(f"  consent:             {d.state}: treated as anonymous\n")
    if ex.vendor:
        out.write(f"  beacon ({ex.vendor}):  {ex.beacon}; {ex.beacon_unclassified} field(s) no rule classifies\n")
    if ex.answered is not None:
        out.write(f"  answered by privproxy: {ex.answered.status} ({ex.answered.outcome}), not forwarded\n")
    else:
        assert ex.forwarded is not None
        out.write(f"  forwarded target:    {_cut(ex.forwarded.target)}\n")
    out.write(f"  access log path:     {ex.logged_path}\n")
    if ex.logged_referrer:
        out.write(f"  access log referrer: {ex.logged_referrer}\n")
    if ex.logged_user_agent:
        out.write(f"  access log agent:    {ex.logged_user_agent}\n")
    if ex.origin_cookie is not None:
        out.write(f"  {'vendor' if ex.vendor else 'origin'} Cookie:       {ex.origin_cookie or '(none)'}\n")
    if ex.sample.set_cookies:
        out.write(f"  Set-Cookie kept:     {len(ex.set_cookies_kept)} of {len(ex.sample.set_cookies)}\n")
    out.write("\n")


# Record fields that differ on every request (or with the visitor's address, when it is not given): null.
_VARYING = ("ts", "request_id", "duration_ms", "instance", "bytes", "tls")


def _record(ex: core.Explanation) -> dict:
    doc = formats.json_doc(ex.record)
    for key in _VARYING:
        doc[key] = None
    if ex.answered is None:
        doc["status"] = None  # the origin decides
    if not ex.client_known:
        doc["client"] = None
    return doc


def _as_json(policy, ex: core.Explanation) -> dict:
    fw = ex.forwarded
    return {
        "method": ex.sample.method,
        "url": ex.sample.url,
        "forwarded": None if fw is None else {
            "target": fw.target,
            "headers": [[k, v] for k, v in fw.headers],
            "body_b64": base64.b64encode(fw.body).decode(),
        },
        "answered": None if ex.answered is None else {"status": ex.answered.status, "outcome": ex.answered.outcome},
        "log": _record(ex),
        "changes": [{"scope": c.scope, "field": c.field, "before": c.before, "after": c.after, "rule": c.rule,
                     "action": c.action, "report_only": c.report_only, "source": core.rule_source(policy, c.rule)}
                    for c in ex.changes],
        "unchanged": [{"scope": s, "field": n} for s, n in ex.kept],
        "unclassified": [{"scope": s, "field": n} for s, n in ex.unclassified],
        "origin_cookie": ex.origin_cookie,
        "set_cookie_kept": list(ex.set_cookies_kept),
        "consent": {"state": ex.consent.state, "member": ex.consent.member or None,
                    "scopes": sorted(ex.consent.scopes), "linked": ex.consent.linked},
        "beacon": {"vendor": ex.vendor, "result": ex.beacon, "unclassified": ex.beacon_unclassified}
        if ex.vendor else None,
    }
