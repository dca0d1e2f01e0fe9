"""`privproxy run`: an embedded mitmproxy Master in reverse mode with only the addons a reverse proxy needs.

Stock mitmdump loads ~35 addons and spends about half its CPU dispatching hooks to them; this Master carries
core, proxyserver, next_layer, tlsconfig and errorcheck plus privproxy's own.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import signal
import sys
from pathlib import Path

from privproxy import sites
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import PrivproxyError

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_CONFDIR = "~/.privproxy"
CA_FILE = "mitmproxy-ca-cert.pem"  # in --confdir: the local CA's certificate, for trials


class CertAction(argparse.Action):
    """--cert starts a certificate; a --key right after it names that certificate's key (args.key[i] belongs to
    args.cert[i]; None: the key is in the certificate file)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        namespace.cert = [*(namespace.cert or []), values]
        namespace.key = [*(namespace.key or []), None]


class KeyAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        keys = list(namespace.key or [])
        if not keys or keys[-1] is not None:
            parser.error(f"--key {values}: put each --key right after the --cert it belongs to "
                         "(--cert fullchain.pem --key privkey.pem)")
        keys[-1] = values
        namespace.key = keys


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run the proxy in front of a website")
    add_run_arguments(p, upstream_required=True)
    p.add_argument("--workers", default=os.environ.get("PRIVPROXY_WORKERS", "1"), metavar="N|auto",
                   help="serve with N worker processes under one supervisor (auto: one per usable CPU; default "
                        "$PRIVPROXY_WORKERS, else 1, a single process): the same listen sockets, one access log, "
                        "one metrics endpoint")
    p.set_defaults(func=cmd)


def add_run_arguments(p, upstream_required: bool) -> None:
    p.add_argument("--upstream", required=upstream_required, metavar="URL",
                   help="the default site's origin, e.g. http://127.0.0.1:8080")
    p.add_argument("--listen", action="append", metavar="HOST:PORT",
                   help=f"address to serve TLS and plain HTTP on (repeatable; default {DEFAULT_LISTEN})")
    p.add_argument("--config", metavar="FILE", help="filters.yaml (default: ./filters.yaml when present)")
    p.add_argument("--cert", action=CertAction, default=[], metavar="[DOMAIN=]FILE",
                   help="serve this certificate: its chain, site certificate first (certbot's fullchain.pem, "
                        "cert-manager's tls.crt), with the key in it or in the --key after it; DOMAIN= serves it for "
                        "that name (SNI); repeatable. Re-read when the files change and on SIGHUP. Default: "
                        "certificates from a local CA in --confdir, for trials only")
    p.add_argument("--key", action=KeyAction, default=[], metavar="FILE",
                   help="the private key of the --cert before it (certbot's privkey.pem, cert-manager's tls.key)")
    add_acme_arguments(p)
    p.add_argument("--log-dir", metavar="DIR", help="write access logs here (access.jsonl and/or access.log)")
    p.add_argument("--geoip-db", metavar="MMDB",
                   help="MaxMind DB for coarse geography (GeoLite2/GeoIP2 City or Country, DB-IP lite)")
    p.add_argument("--log-format", choices=("json", "combined", "vhost_combined", "both"),
                   help="access.jsonl (json), access.log in Combined Log Format or Apache's vhost_combined, or "
                        "json and combined both "
                        "(default: filters.yaml's logging.format, else json)")
    p.add_argument("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics (HOST defaults to 127.0.0.1)")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="believe forwarding headers from these addresses (repeatable)")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="every connection starts with a PROXY header (v1/v2) from a --trusted-proxy, e.g. HAProxy "
                        "passing TLS through with send-proxy-v2; the announced client address is used")
    p.add_argument("--require-secrets", action="store_true",
                   help="refuse to start without a pseudonymization key (a readable pseudonymization.key_file, "
                        "else PRIVPROXY_SECRET) and a consent key when consent is on, so instances never run on "
                        "throwaway keys")
    p.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="on SIGTERM stop accepting, and let requests in flight finish for up to this long "
                        "(default 10; 0 stops at once; a second SIGTERM too)")
    p.add_argument("--upstream-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="an origin that has not started its answer this long after the request is given up on, "
                        "and the visitor gets a 504 (default 60; 0: no limit)")
    p.add_argument("--instance", metavar="NAME",
                   help="this instance's name in log records (default: HOST:PORT, host name and first listen port)")
    p.add_argument("--confdir", default=DEFAULT_CONFDIR, metavar="DIR",
                   help=f"where the demo CA and generated certificates live (default {DEFAULT_CONFDIR})")
    p.add_argument("--ready-file", metavar="FILE", help="write the bound addresses here as JSON once serving")
    p.add_argument("-v", "--verbose", action="store_true", help="log privproxy's debug messages")


def add_acme_arguments(p) -> None:
    from privproxy.acme_state import CHALLENGE_TYPES, LETS_ENCRYPT

    p.add_argument("--acme", action="append", default=[], metavar="DOMAIN",
                   help="obtain a certificate for DOMAIN from an ACME CA (Let's Encrypt by default) and renew it at "
                        "two thirds of its lifetime, validated by TLS-ALPN-01 (port 443) or HTTP-01 (port 80) on "
                        "privproxy's own listeners; served by SNI; repeatable (one certificate per name)")
    p.add_argument("--acme-email", metavar="ADDR", help="the ACME account's contact (required with --acme)")
    p.add_argument("--acme-directory", default=LETS_ENCRYPT, metavar="URL",
                   help=f"the ACME directory (default Let's Encrypt production, {LETS_ENCRYPT}; its staging "
                        "directory for trials)")
    p.add_argument("--acme-ca", metavar="FILE",
                   help="trust this CA certificate (PEM) for the ACME directory's TLS: a private ACME CA")
    p.add_argument("--acme-dir", metavar="DIR",
                   help="where the ACME account and certificates are kept, mode 0600 (default CONFDIR/acme); "
                        "instances that share it share one account and one certificate per name")
    p.add_argument("--acme-challenge", action="append", default=[], choices=CHALLENGE_TYPES, metavar="TYPE",
                   help="answer only this challenge type (tls-alpn-01 or http-01; repeatable, in order of "
                        "preference); default both, chosen by the listen ports, the other one after a failure")
    p.add_argument("--acme-retry", type=int, default=None, metavar="SECONDS", help=argparse.SUPPRESS)


def check_acme(args) -> str | None:
    """The --acme flags make sense together, before anything binds: the error message, or None."""
    from privproxy import acme_state

    acme = getattr(args, "acme", [])
    if not acme:
        given = [f for f, v in (("--acme-email", args.acme_email), ("--acme-ca", args.acme_ca),
                                ("--acme-dir", args.acme_dir), ("--acme-challenge", args.acme_challenge)) if v]
        if given:
            return f"{given[0]} without --acme DOMAIN: name each domain to obtain a certificate for (--acme DOMAIN)"
        return None
    try:
        for domain in acme:
            acme_state.check_domain(domain)
        if not args.acme_email:
            return ("--acme needs --acme-email ADDR: the contact of the account privproxy registers with the CA "
                    "(e.g. --acme-email ops@example.com)")
        acme_state.check_email(args.acme_email)
        acme_state.check_directory(args.acme_directory)
        acme_state.check_ca_file(args.acme_ca or "")
    except ValueError as e:
        return str(e)
    return None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:443 or 127.0.0.1:8443")
    return host.strip("[]") or "0.0.0.0", int(port)


def mode_specs(upstream: str, listens: list[str]) -> list[str]:
    from privproxy.mitm import internals

    return [internals.reverse_mode(upstream, *parse_listen(value)) for value in listens]


def check_certificates(args) -> str | None:
    """Every --cert/--key pair readable and matching, before anything binds: the error message, or None."""
    from privproxy.mitm import certificate_files

    now = datetime.datetime.now(datetime.UTC)
    for cert, key in zip(args.cert, args.key, strict=True):
        try:
            certificate_files.read(certificate_files.Spec.parse(cert, key or ""), now)
        except certificate_files.CertificateError as e:
            return str(e)
    return None


def cmd(args) -> int:
    from privproxy import pseudonyms, workers

    worker = workers.worker_spec()  # a worker of `run --workers N`: its supervisor's sockets, status file, key
    if worker is not None:
        pseudonyms.share_random_key(worker.key_period, worker.key)
        args.metrics = args.ready_file = None  # the supervisor serves them for all its workers
    try:
        n = 1 if worker is not None else workers.parse_workers(getattr(args, "workers", "1"))
    except ValueError as e:
        return fail(str(e))
    try:
        loaded = load_policy(args.config)  # fail before binding anything, with FILE:LINE:COL
    except PrivproxyError as e:
        return report(e)
    try:
        sites.parse_upstream(args.upstream)
        listens = args.listen or [DEFAULT_LISTEN]
        if worker is not None:  # the ports the supervisor bound (port 0 resolved)
            listens = [workers.listen_argument(host, port) for host, port, _ in worker.listen]
        specs = mode_specs(args.upstream, listens)
    except ValueError as e:
        return fail(f"--upstream {args.upstream!r}: {e}" if "listen" not in str(e) else str(e))
    if (problem := check_certificates(args) or check_acme(args)) is not None:
        return fail(problem)
    if n > 1:
        return supervise(args, n, listens, loaded)
    try:
        return event_loop_runner()(serve(args, specs, trial_ca_note=not args.cert and not args.acme, worker=worker))
    except KeyboardInterrupt:
        return 0


def supervise(args, n: int, listens: list[str], loaded) -> int:
    """`--workers N`: this process binds the sockets and supervises N copies of this command, each a worker."""
    from privproxy import workers
    from privproxy.mitm.exporter import parse_listen as parse_status

    setup_logging(args.verbose)
    command = [sys.executable, "-m", "privproxy", *sys.argv[1:], "--workers", "1"]
    try:
        return workers.supervise(
            n, command, [parse_listen(v) for v in listens], config=args.config,
            require_secrets=bool(args.require_secrets), drain_timeout=float(args.drain_timeout),
            rotation=loaded.scrubber.pseudonymizer.settings.rotation,
            status=parse_status(args.metrics) if args.metrics else None, ready_file=args.ready_file or "")
    except OSError as e:
        return fail(str(e))


def event_loop_runner():
    """uvloop when installed (a faster event loop for the same asyncio code), else asyncio's own;
    PRIVPROXY_EVENT_LOOP=asyncio forces the latter."""
    if os.environ.get("PRIVPROXY_EVENT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            from privproxy.mitm import internals

            internals.eager_tasks_for_uvloop()
            return uvloop.run
    return asyncio.run


def setup_logging(verbose: bool) -> None:
    from privproxy.mitm.log_redaction import RedactAddresses

    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactAddresses())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # mitmproxy logs every connection with the client's address at INFO: keep only its warnings and errors.
    for name in ("mitmproxy", "hpack", "h2", "quic", "asyncio", "passlib"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Announce:
    """Prints where the proxy listens once the servers are bound (addresses of this host, not of clients)."""

    def __init__(self, log_dir: str | None, metrics_addon, trial_ca: Path | None = None, quiet: bool = False) -> None:
        self.log_dir = log_dir
        self.metrics_addon = metrics_addon
        self.trial_ca = trial_ca
        self.quiet = quiet  # a worker other than the first of `run --workers`: the first one says it

    def running(self) -> None:
        from mitmproxy import ctx

        from privproxy.mitm import internals

        master = ctx.master
        # mitmproxy dispatches every hook to every addon; errorcheck only watches startup, which the Master
        # checks right after this hook. Take it out of the chain a moment later, so requests do not pay for it.
        asyncio.get_running_loop().call_later(1.0, internals.retire_errorcheck, master)
        if self.quiet:
            return
        ps = master.addons.get("proxyserver")
        for addr in ps.listen_addrs():
            print(f"privproxy: {serving(addr[0], addr[1])}", file=sys.stderr, flush=True)
        if self.trial_ca is not None:
            print(f"privproxy: no --cert given: TLS certificates come from a local CA, for trials only (browsers "
                  f"warn; a client must trust {self.trial_ca}, e.g. curl --cacert {self.trial_ca}). For a real "
                  "certificate: --cert fullchain.pem --key privkey.pem (certbot) or --cert tls.crt --key tls.key "
                  "(cert-manager's Secret)", file=sys.stderr, flush=True)
        for sink in self.metrics_addon.shared.sinks.values():
            print(f"privproxy: access log {sink.path}", file=sys.stderr, flush=True)
        if self.metrics_addon.address:
            h, p = self.metrics_addon.address
            print(f"privproxy: metrics http://{h}:{p}/metrics", file=sys.stderr, flush=True)


def serving(host: str, port: int) -> str:
    """The start-up line for one bound listener: this host's own address, shown as it is."""
    wildcard = {"0.0.0.0": ("localhost", "IPv4"), "::": ("[::1]", "IPv6")}
    shown = f"[{host}]" if ":" in host else host
    local, family = wildcard.get(host, (shown, ""))
    line = f"serving https://{local}:{port}/ and http://{local}:{port}/ (redirects to HTTPS)"
    return f"{line} on every {family} address ({shown}:{port})" if family else line


def acme_options(args) -> dict[str, object]:
    """The --acme flags as privproxy's mitmproxy options (none when the parser has no --acme, e.g. `demo`)."""
    if not hasattr(args, "acme"):
        return {}
    opts: dict[str, object] = {
        "privproxy_acme_domains": list(args.acme),
        "privproxy_acme_email": str(args.acme_email or ""),
        "privproxy_acme_directory": str(args.acme_directory),
        "privproxy_acme_ca": str(args.acme_ca or ""),
        "privproxy_acme_dir": str(args.acme_dir or ""),
        "privproxy_acme_challenges": list(args.acme_challenge),
    }
    if args.acme_retry is not None:
        opts["privproxy_acme_retry"] = int(args.acme_retry)
    return opts


def proxy_master(verbose: bool, *own: object):
    """mitmproxy's Master and options as `privproxy run` sets them up, with `own` as its addons: the mitmproxy
    addons a reverse proxy needs, hooks dispatched straight to the addons that have them, privproxy's logging,
    mitmproxy's debug-only type check left out, its header lookups in fewer calls and its option reads without
    copying strings and numbers. bench/bare_master.py runs it with no addons of its own."""
    from mitmproxy import master, options
    from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, tlsconfig

    from privproxy.mitm import internals
    from privproxy.mitm.dispatch import DirectAddonManager

    setup_logging(verbose)
    internals.skip_message_typecheck()
    internals.faster_header_lookups()
    internals.faster_option_reads()
    internals.faster_ids()
    internals.lighter_context_forks()
    internals.checked_once_per_class()
    internals.crl_path_once()
    internals.run_hooks_in_place()
    opts = options.Options()
    m = master.Master(opts)
    m.addons = DirectAddonManager(m)  # before any addon: hooks go straight to the addons that have them
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(), *own,
                 errorcheck.ErrorCheck())
    return m, opts


async def serve(args, specs: list[str], extra_addons: tuple[object, ...] = (), trial_ca_note: bool = False,
                worker=None) -> int:
    from mitmproxy import exceptions

    import privproxy.mitm
    from privproxy.mitm.drain import Drain
    from privproxy.mitm.exporter import MetricsExporter

    confdir = Path(args.confdir).expanduser()
    trial_ca = confdir / CA_FILE if trial_ca_note else None
    ours = privproxy.mitm.addons(None if worker is None else worker_state(args))
    exporter = next(a for a in ours if isinstance(a, MetricsExporter))
    drain = Drain()
    if worker is not None:
        extra_addons = (*extra_addons, *worker_addons(worker, ours, exporter))
    m, opts = proxy_master(args.verbose, privproxy.mitm.Privproxy([
        drain, *ours, *extra_addons,
        Announce(args.log_dir, exporter, trial_ca, quiet=worker is not None and worker.index > 0)]))
    try:
        opts.update(
            mode=specs,
            confdir=str(confdir),
            privproxy_certs=list(args.cert),
            privproxy_cert_keys=[k or "" for k in args.key],
            connection_strategy="lazy",
            privproxy_config=str(args.config or ""),
            privproxy_log_dir=str(args.log_dir or ""),
            privproxy_log_format=str(args.log_format or ""),
            privproxy_geoip_db=str(args.geoip_db or ""),
            privproxy_metrics=str(args.metrics or ""),
            privproxy_trusted_proxies=list(args.trusted_proxy),
            privproxy_ready_file=str(args.ready_file or ""),
            privproxy_proxy_protocol=bool(args.proxy_protocol),
            privproxy_instance=str(args.instance or ""),
            privproxy_require_secrets=bool(args.require_secrets),
            privproxy_upstream_timeout=float(args.upstream_timeout),
            **acme_options(args),
        )
    except exceptions.OptionsError as e:
        return fail(str(e))
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    def stop() -> None:
        exporter.serving = False  # /readyz says 503 from now on
        if draining or args.drain_timeout <= 0:
            m.shutdown()  # a second signal: stop now
        else:
            draining.append(loop.create_task(drain.drain(m, args.drain_timeout)))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    await m.run()
    return 0


def worker_state(args):
    """A worker's shared state: metrics in the supervisor's multiprocess files, log files shared with the other
    workers (rotation coordinated between them)."""
    from privproxy.metrics import Metrics
    from privproxy.mitm.shared import SharedState

    shared = SharedState(Metrics(upstream_timeout=float(args.upstream_timeout)))
    shared.shared_logs = True
    return shared


def worker_addons(worker, ours, exporter) -> tuple[object, ...]:
    """A worker listens on its supervisor's sockets, reloads filters.yaml only when the supervisor (which validated
    it) sends SIGHUP, and reports its state to the supervisor."""
    from privproxy.mitm import internals
    from privproxy.mitm.reload import PolicyReloader
    from privproxy.mitm.worker import WorkerStatus

    internals.listen_on(worker.sockets())
    for addon in ours:
        if isinstance(addon, PolicyReloader):
            addon.watch = False
    return (WorkerStatus(exporter.shared, exporter, worker.status),)
