"""WorkerStatus: in a worker of `privproxy run --workers`, tell the supervisor twice a second whether this worker
serves and which rules it runs (privproxy.workers.Status), and refresh the metrics read from the process's state.

A worker whose supervisor is gone (killed without the chance to stop it) drains and stops by itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from privproxy.mitm.exporter import MetricsExporter
from privproxy.mitm.shared import SharedState
from privproxy.workers import Status

logger = logging.getLogger(__name__)
INTERVAL = 0.5


class WorkerStatus:
    def __init__(self, shared: SharedState, exporter: MetricsExporter, path: str) -> None:
        self.shared = shared
        self.exporter = exporter
        self.path = path
        self.parent = os.getppid()
        self._task: asyncio.Task[None] | None = None
        self.orphaned = False

    def running(self) -> None:
        self.report()
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            try:
                self.report()
            except Exception as e:  # noqa: BLE001 - the status must keep being written, or the worker looks dead
                logger.error("privproxy: worker status failed (%s)", type(e).__name__)

    def report(self, ready: bool | None = None) -> None:
        if os.getppid() != self.parent and not self.orphaned:
            self.orphaned = True
            logger.error("privproxy: the supervisor is gone; this worker drains and stops")
            os.kill(os.getpid(), signal.SIGTERM)
        self.shared.metrics.refresh()
        policy = self.shared.policy
        ok = self.exporter.ready()[0] if ready is None else ready
        Status(os.getpid(), ok, policy.sha256 if policy is not None else "", time.time()).write(self.path)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            self.report(ready=False)
        except OSError:
            pass  # the supervisor removed its directory: it is stopping too
