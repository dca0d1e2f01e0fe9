"""privproxy's mitmproxy options, policy loading, and the public-proxy hardening of mitmproxy's defaults."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import ctx, exceptions

from privproxy import client_ip, policy
from privproxy.errors import ConfigError, ConfigErrors
from privproxy.mitm import proxy_protocol, quiet
from privproxy.mitm.runtime import Runtime

logger = logging.getLogger(__name__)
INSTANCE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def config_path(option: str) -> Path | None:
    """The explicit path, else ./filters.yaml when present, else None (built-in defaults)."""
    if option:
        return Path(option)
    here = Path("filters.yaml")
    return here if here.is_file() else None


class Options:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def load(self, loader) -> None:
        loader.add_option("privproxy_config", str, "",
                          "privproxy's filters.yaml; empty: ./filters.yaml when present, else built-in defaults.")
        loader.add_option("privproxy_log_dir", str, "", "Directory for privproxy's access logs; empty: no log.")
        loader.add_option("privproxy_log_format", str, "",
                          "Access-log format: json, combined or both; empty: filters.yaml's logging.format.")
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
                          "This instance's name in log records; empty: HOST:PORT of the host name and first listen port.")
        loader.add_option("privproxy_ready_file", str, "",
                          "Write the bound listen and metrics addresses here as JSON once serving.")
        quiet.install()

    def configure(self, updated: set[str]) -> None:
        if "privproxy_instance" in updated:
            name = ctx.options.privproxy_instance
            if name and not INSTANCE_NAME.fullmatch(name):
                raise exceptions.OptionsError(
                    f"privproxy_instance {name!r}: use 1-64 letters, digits and . _ : - (e.g. the pod or host name)")
            self.rt.instance = name or self.rt.instance
        if "privproxy_proxy_protocol" in updated:
            self.rt.proxy_protocol = ctx.options.privproxy_proxy_protocol
            if self.rt.proxy_protocol:
                proxy_protocol.install(self.rt)
        if "privproxy_trusted_proxies" in updated:
            try:
                self.rt.extra_trusted = client_ip.parse_networks(ctx.options.privproxy_trusted_proxies)
            except ValueError as e:
                raise exceptions.OptionsError(f"privproxy_trusted_proxies: not a CIDR: {e}") from None
        if "privproxy_geoip_db" in updated:
            self.rt.geoip_override = ctx.options.privproxy_geoip_db
        if updated & {"privproxy_config", "privproxy_trusted_proxies", "privproxy_geoip_db"}:
            path = config_path(ctx.options.privproxy_config)
            try:
                p = policy.load(path) if path else policy.default()
            except (ConfigError, ConfigErrors) as e:
                self.rt.metrics.reloads.labels("failure").inc()
                raise exceptions.OptionsError(str(e)) from None
            if ctx.options.privproxy_require_secrets and (missing := policy.missing_secrets(p)):
                self.rt.metrics.reloads.labels("failure").inc()
                raise exceptions.OptionsError("privproxy_require_secrets: " + "; ".join(missing)
                                              + ". Set them in the service's environment (e.g. a Kubernetes Secret)")
            self.rt.swap(p)
            try:
                self.rt.load_geo(strict=True)
            except ConfigError as e:
                raise exceptions.OptionsError(str(e)) from None
            self.rt.metrics.reloads.labels("success").inc()
            for w in p.warnings:
                logger.warning(w)
            self.harden()
        if self.rt.proxy_protocol and self.rt.policy is not None and not self.rt.policy.client_ip.trusted_proxies:
            raise exceptions.OptionsError(
                "privproxy_proxy_protocol: no trusted proxy is configured, so every connection would be refused; "
                "add the load balancer's address with --trusted-proxy CIDR or client_ip.trusted_proxies")

    def running(self) -> None:
        if not ctx.options.privproxy_instance:
            ps = ctx.master.addons.get("proxyserver")
            ports = [a[1] for a in ps.listen_addrs()] if ps else []
            self.rt.instance = socket.gethostname()[:48] + (f":{ports[0]}" if ports else "")

    def harden(self) -> None:
        """mitmproxy's defaults suit a debugging proxy; a public reverse proxy needs these instead."""
        opts = ctx.options
        wanted: dict[str, object] = {
            "keep_host_header": True,  # sites are chosen by the visitor's Host, and origins expect it
            "block_global": False,  # else every visitor with a public address is refused
        }
        if "flow_detail" in opts and opts.flow_detail:
            wanted["flow_detail"] = 0  # the dumper prints client addresses and full URLs
            logger.warning("privproxy: flow_detail set to 0: mitmproxy's flow output shows client addresses and URLs")
        if self.rt.policy is not None and "tls_version_client_min" in opts:
            wanted["tls_version_client_min"] = self.rt.policy.https.min_tls
        changes = {k: v for k, v in wanted.items() if k in opts and getattr(opts, k) != v}
        if changes:
            opts.update(**changes)
