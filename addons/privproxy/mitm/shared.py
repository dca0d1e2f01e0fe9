"""The state privproxy's addons share in one process: the active Policy (swapped whole), metrics, sinks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from privproxy import client_ip, geo
from privproxy.errors import ConfigError
from privproxy.access_log.sink import Sink
from privproxy.metrics import Metrics
from privproxy.outcome import Result
from privproxy.policy import Policy


class SharedState:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.policy: Policy | None = None
        self.metrics = metrics or Metrics()
        self.sinks: dict[str, Sink] = {}  # access-log format -> its file
        self.linked: Sink | None = None  # linked.jsonl: consented members' requests with their id
        self.extra_trusted: tuple[client_ip.Network, ...] = ()
        self.geoip_override = ""  # --geoip-db, wins over filters.yaml's geo.database
        self.locator: geo.Locator | None = None
        self.proxy_protocol = False  # reverse listeners require a PROXY header from a trusted proxy
        self.instance = ""  # names this process in log records; set by --instance or from host and port
        self.shared_logs = False  # other processes (the workers of `run --workers`) append to the same log files

    def all_sinks(self) -> list[Sink]:
        return [*self.sinks.values(), *([self.linked] if self.linked is not None else [])]

    def swap(self, policy: Policy) -> Policy:
        """Install a new Policy in one assignment; flows already under way keep the one they started with."""
        if self.extra_trusted:
            ci = dataclasses.replace(policy.client_ip,
                                     trusted_proxies=policy.client_ip.trusted_proxies + self.extra_trusted)
            policy = dataclasses.replace(policy, client_ip=ci)
        self.policy = policy
        self.metrics.policy_loaded(policy, time.time())
        return policy

    def load_geo(self, strict: bool) -> None:
        """Open the GeoIP database the config names. strict (at start): a bad file is an error; on reload the
        proxy goes on without geography, logs it once and counts it."""
        assert self.policy is not None
        settings = dataclasses.replace(self.policy.geo, database=self.geoip_override or self.policy.geo.database)
        old = self.locator
        if old is not None and old.settings == settings:
            return
        if not settings.database:
            self.locator = None
        else:
            try:
                self.locator = geo.Locator(settings, geo.GeoDB(settings.database, settings.granularity))
                self.metrics.geo_load(Result.SUCCESS)
            except ConfigError as e:
                self.metrics.geo_load(Result.FAILURE)
                if strict:
                    raise
                logging.getLogger(__name__).error("privproxy: %s; serving on without geography", e)
                self.locator = None
        if old is not None and old.db is not None and old.db is not (self.locator.db if self.locator else None):
            old.db.close()


async def poll_forever(check: Callable[[], object], seconds: float, what: str) -> None:
    """`check()` every `seconds` until cancelled: the file watchers (rules, certificates), which must outlive any
    surprise in one look."""
    while True:
        await asyncio.sleep(seconds)
        try:
            check()
        except Exception as e:  # noqa: BLE001 - the watcher must outlive any surprise
            logging.getLogger(__name__).error("privproxy: %s watcher error (%s)", what, type(e).__name__)
