"""State shared by privproxy's addons in one process: the active Policy (swapped whole), metrics, sinks."""

from __future__ import annotations

import dataclasses
import time

from privproxy import client_ip
from privproxy.access_log.sink import Sink
from privproxy.metrics import Metrics
from privproxy.policy import Policy


class Runtime:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.policy: Policy | None = None
        self.metrics = metrics or Metrics()
        self.sinks: dict[str, Sink] = {}  # access-log format -> its file
        self.extra_trusted: tuple[client_ip.Network, ...] = ()

    def swap(self, policy: Policy) -> Policy:
        """Install a new Policy in one assignment; flows already under way keep the one they started with."""
        if self.extra_trusted:
            ci = dataclasses.replace(policy.client_ip,
                                     trusted_proxies=policy.client_ip.trusted_proxies + self.extra_trusted)
            policy = dataclasses.replace(policy, client_ip=ci)
        self.policy = policy
        self.metrics.preinit(policy.sites.names, policy.rules.rules)
        self.metrics.config.info({"sha256": policy.sha256, "path_hash": policy.sha256[:12]})
        self.metrics.reload_success.set(time.time())
        return policy
