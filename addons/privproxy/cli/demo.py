"""`privproxy demo`: the built-in sample site behind the proxy on localhost, with TLS and an access log."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

from privproxy import policy
from privproxy.cli import run
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import PrivproxyError


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the proxy in front of a built-in sample site")
    run.add_run_arguments(p, upstream_required=False)
    p.add_argument("--exit-after", type=float, default=0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd)


class ExitAfter:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def running(self) -> None:
        from mitmproxy import ctx

        if self.seconds > 0:
            import asyncio

            asyncio.get_running_loop().call_later(self.seconds, ctx.master.shutdown)


def cmd(args) -> int:
    from privproxy.demo import site

    # The demo's site plays the member system; both sides need the same consent key (one per demo run).
    os.environ.setdefault("PRIVPROXY_CONSENT_KEY", secrets.token_hex(32))
    try:
        load_policy(args.config)
    except PrivproxyError as e:
        return report(e)
    origin = site.start()
    args.upstream = args.upstream or f"http://127.0.0.1:{origin.server_address[1]}"
    args.log_dir = args.log_dir or str(Path(tempfile.gettempdir()) / "privproxy-demo")
    vendor = None
    if not args.config:  # the analytics gateway: the page's beacons go to a stand-in vendor, not to the origin
        vendor = site.start_vendor()
        vendor_url = f"http://127.0.0.1:{vendor.server_address[1]}"
        shipped = Path("filters.yaml") if Path("filters.yaml").is_file() else policy.DEFAULT_FILE
        derived = Path(args.log_dir) / "demo-filters.yaml"
        try:
            derived.parent.mkdir(parents=True, exist_ok=True)
            derived.write_text(site.gateway_config(shipped.read_text(encoding="utf-8"), vendor_url))
            load_policy(str(derived))
        except (OSError, PrivproxyError) as e:
            return report(e) if isinstance(e, PrivproxyError) else fail(f"cannot write {derived}: {e}")
        args.config = str(derived)
        print(f"privproxy demo: analytics vendor at {vendor_url} (beacons.forward in {derived})", file=sys.stderr)
    try:
        specs = run.mode_specs(args.upstream, args.listen or [run.DEFAULT_LISTEN])
    except ValueError as e:
        return fail(str(e))
    ca = Path(args.confdir).expanduser() / "mitmproxy-ca-cert.pem"
    print(f"privproxy demo: sample site at {args.upstream} (origin, loopback only)", file=sys.stderr)
    host, port = run.parse_listen((args.listen or [run.DEFAULT_LISTEN])[0])
    shown = "localhost" if host in ("127.0.0.1", "::1", "0.0.0.0", "::") else host
    print(f"privproxy demo: the TLS certificate comes from a local demo CA: {ca}\n"
          f"  (curl --cacert {ca} https://{shown}:{port}/ , or accept the browser warning)", file=sys.stderr)
    print("privproxy demo: try /products?gclid=..., /newsletter?email=..., /whoami, /analytics, and "
          "/member/login (a consenting member) then /analytics again; Ctrl-C stops", file=sys.stderr)
    try:
        import asyncio

        return asyncio.run(run.serve(args, specs, extra_addons=(ExitAfter(args.exit_after),)))
    except KeyboardInterrupt:
        return 0
    finally:
        origin.shutdown()
        if vendor is not None:
            vendor.shutdown()
