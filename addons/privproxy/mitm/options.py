"""privproxy's mitmproxy options, policy loading, and the public-proxy hardening of mitmproxy's defaults: no raw
TCP, forward-secret AEAD suites, and the guarded HTTP layer's request-head limits (C1, C15)."""

from __future__ import annotations

import logging
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from privproxy import acme_state, client_ip, policy
from privproxy.errors import ConfigError, ConfigErrors
from privproxy.mitm import flowview, https, internals, log_redaction, proxy_protocol
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Result

logger = logging.getLogger(__name__)
INSTANCE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# TLS 1.2 suites: forward-secret key exchange and AEAD only (BSI TR-02102-2, Mozilla "intermediate"); every
# TLS 1.3 suite already is both, and ciphers_client does not touch them.
FORWARD_SECRET_AEAD = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


def config_path(option: str) -> Path | None:
    """The explicit path, else ./filters.yaml when present, else None (built-in defaults)."""
    if option:
        return Path(option)
    here = Path("filters.yaml")
    return here if here.is_file() else None


class LayerSettings:
    """What mitmproxy's guarded HTTP layer (internals.guard_http) asks privproxy: head limits from the options,
    HSTS and the buffered-body limit from the rules the flow was classified under (or the current ones)."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.max_head = 64 * 1024
        self.head_timeout = 30.0

    def hsts(self, flow: http.HTTPFlow | None, tls: bool) -> str | None:
        return https.hsts_for(self.shared, flow, tls)

    def body_limit(self, flow: http.HTTPFlow) -> int | None:
        state = flowview.state_of(flow)
        p = state.policy if state is not None else self.shared.policy
        return p.beacons.limits.max_body if p is not None else None


class Options:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.layer = LayerSettings(shared)

    def load(self, loader) -> None:
        # Large beacons are scrubbed on a worker thread (PrivacyFilter.request); CPython lets the event loop's
        # thread have the GIL back only every switch interval (5 ms by default): 1 ms keeps other requests'
        # latency low while one is scrubbed.
        sys.setswitchinterval(0.001)
        loader.add_option("privproxy_config", str, "",
                          "privproxy's filters.yaml; empty: ./filters.yaml when present, else built-in defaults.")
        loader.add_option("privproxy_log_dir", str, "", "Directory for privproxy's access logs; empty: no log.")
        loader.add_option("privproxy_log_format", str, "",
                          "Access-log format: json, combined, vhost_combined or both; empty: filters.yaml's "
                          "logging.format.")
        loader.add_option("privproxy_geoip_db", str, "",
                          "MaxMind DB (.mmdb) for coarse geography; empty: filters.yaml's geo.database.")
        loader.add_option("privproxy_metrics", str, "",
                          "Serve Prometheus metrics on [HOST:]PORT (HOST defaults to 127.0.0.1); empty: off.")
        loader.add_option("privproxy_trusted_proxies", Sequence[str], [],
                          "CIDRs whose forwarding headers are believed, in addition to filters.yaml's.")
        loader.add_option("privproxy_proxy_protocol", bool, False,
                          "Reverse listeners require a PROXY protocol header (v1 or v2) from a trusted proxy, "
                          "e.g. HAProxy passing TLS through with send-proxy-v2.")
        loader.add_option("privproxy_require_secrets", bool, False,
                          "Refuse to start (and to reload) without the pseudonymization secret and, with consent "
                          "on, a consent key: instances that must agree cannot run on throwaway keys.")
        loader.add_option("privproxy_instance", str, "",
                          "This instance's name in log records; empty: HOST:PORT of the host name and first listen "
                          "port.")
        loader.add_option("privproxy_ready_file", str, "",
                          "Write the bound listen and metrics addresses here as JSON once serving.")
        loader.add_option("privproxy_certs", Sequence[str], [],
                          "The operator's certificates, each [DOMAIN=]FILE: the chain (site certificate first) and, "
                          "unless privproxy_cert_keys names a key file for it, the private key. Served by SNI, "
                          "re-read when the files change and on SIGHUP. Empty: mitmproxy's `certs`, else "
                          "certificates from mitmproxy's local CA (for trials only).")
        loader.add_option("privproxy_cert_keys", Sequence[str], [],
                          "The private-key file of each privproxy_certs entry, in the same order; empty or missing: "
                          "the key is in the certificate file.")
        loader.add_option("privproxy_acme_domains", Sequence[str], [],
                          "Obtain and renew a certificate for each of these names from an ACME CA (TLS-ALPN-01 or "
                          "HTTP-01 answered on privproxy's own listeners), served by SNI.")
        loader.add_option("privproxy_acme_email", str, "", "The ACME account's contact address (required with "
                          "privproxy_acme_domains).")
        loader.add_option("privproxy_acme_directory", str, acme_state.LETS_ENCRYPT,
                          "The ACME directory URL; default Let's Encrypt production.")
        loader.add_option("privproxy_acme_ca", str, "",
                          "PEM file of the CA that signed the ACME directory's TLS certificate (a private CA); "
                          "empty: the usual public roots.")
        loader.add_option("privproxy_acme_dir", str, "",
                          "Where the ACME account and certificates are kept (mode 0600); empty: CONFDIR/acme. "
                          "Instances that share it share one account and one certificate per name.")
        loader.add_option("privproxy_acme_challenges", Sequence[str], [],
                          "The ACME challenge types to answer, in order of preference (tls-alpn-01, http-01); "
                          "empty: both, chosen by the listen ports.")
        loader.add_option("privproxy_acme_retry", int, int(acme_state.FIRST_RETRY),
                          "Seconds before the first retry of a failed ACME order; doubling up to six hours.")
        loader.add_option("privproxy_max_request_head", int, 64 * 1024,
                          "Bytes a request line and its header fields may take; larger heads are answered 431.")
        loader.add_option("privproxy_request_head_timeout", int, 30,  # int: mitmproxy's --set parses no floats
                          "Seconds a request head may take from a connection's start (or its first byte) to its "
                          "end; slower ones are answered 408. 0: no limit.")
        log_redaction.install()
        internals.guard_http(self.layer)

    def configure(self, updated: set[str]) -> None:
        if "privproxy_max_request_head" in updated:
            if ctx.options.privproxy_max_request_head < 1024:
                raise exceptions.OptionsError("privproxy_max_request_head: at least 1024 bytes")
            self.layer.max_head = ctx.options.privproxy_max_request_head
        if "privproxy_request_head_timeout" in updated:
            if ctx.options.privproxy_request_head_timeout < 0:
                raise exceptions.OptionsError("privproxy_request_head_timeout: 0 (off) or a number of seconds")
            self.layer.head_timeout = float(ctx.options.privproxy_request_head_timeout)
        if "privproxy_instance" in updated:
            name = ctx.options.privproxy_instance
            if name and not INSTANCE_NAME.fullmatch(name):
                raise exceptions.OptionsError(
                    f"privproxy_instance {name!r}: use 1-64 letters, digits and . _ : - (e.g. the pod or host name)")
            self.shared.instance = name or self.shared.instance
        if "privproxy_proxy_protocol" in updated:
            self.shared.proxy_protocol = ctx.options.privproxy_proxy_protocol
            if self.shared.proxy_protocol:
                proxy_protocol.install(self.shared)
        if "privproxy_trusted_proxies" in updated:
            try:
                self.shared.extra_trusted = client_ip.parse_networks(ctx.options.privproxy_trusted_proxies)
            except ValueError as e:
                raise exceptions.OptionsError(f"privproxy_trusted_proxies: not a CIDR: {e}") from None
        if "privproxy_geoip_db" in updated:
            self.shared.geoip_override = ctx.options.privproxy_geoip_db
        if updated & {"privproxy_config", "privproxy_trusted_proxies", "privproxy_geoip_db"}:
            path = config_path(ctx.options.privproxy_config)
            try:
                p = policy.load(path) if path else policy.default()
            except (ConfigError, ConfigErrors) as e:
                self.shared.metrics.reload(Result.FAILURE)
                raise exceptions.OptionsError(str(e)) from None
            if ctx.options.privproxy_require_secrets and (missing := policy.missing_secrets(p)):
                self.shared.metrics.reload(Result.FAILURE)
                raise exceptions.OptionsError("privproxy_require_secrets: " + "; ".join(missing)
                                              + ". Set them in the service's environment (e.g. a Kubernetes Secret)")
            self.shared.swap(p)
            try:
                self.shared.load_geo(strict=True)
            except ConfigError as e:
                raise exceptions.OptionsError(str(e)) from None
            self.shared.metrics.reload(Result.SUCCESS)
            for w in p.warnings:
                logger.warning(w)
            self.harden()
        active = self.shared.policy
        if self.shared.proxy_protocol and active is not None and not active.client_ip.trusted_proxies:
            raise exceptions.OptionsError(
                "privproxy_proxy_protocol: no trusted proxy is configured, so every connection would be refused; "
                "add the load balancer's address with --trusted-proxy CIDR (mitmdump: --set "
                "privproxy_trusted_proxies=CIDR) or client_ip.trusted_proxies")

    def running(self) -> None:
        if not ctx.options.privproxy_instance:
            ps = ctx.master.addons.get("proxyserver")
            ports = [a[1] for a in ps.listen_addrs()] if ps else []
            self.shared.instance = socket.gethostname()[:48] + (f":{ports[0]}" if ports else "")

    def harden(self) -> None:
        """mitmproxy's defaults suit a debugging proxy; a public reverse proxy needs these instead."""
        opts = ctx.options
        wanted: dict[str, object] = {
            "keep_host_header": True,  # sites are chosen by the visitor's Host, and origins expect it
            "block_global": False,  # else every visitor with a public address is refused
            # Never relay raw TCP: mitmproxy would for a first line that does not look like HTTP, and after an
            # origin's 101 that is not WebSocket; nothing would be logged or scrubbed on such a connection.
            "rawtcp": False,
            "ciphers_client": FORWARD_SECRET_AEAD,
        }
        if "flow_detail" in opts and opts.flow_detail:
            wanted["flow_detail"] = 0  # the dumper prints client addresses and full URLs
            logger.warning("privproxy: flow_detail set to 0: mitmproxy's flow output shows client addresses and URLs")
        if self.shared.policy is not None and "tls_version_client_min" in opts:
            wanted["tls_version_client_min"] = self.shared.policy.https.min_tls
        changes = {k: v for k, v in wanted.items() if k in opts and getattr(opts, k) != v}
        if changes:
            opts.update(**changes)
