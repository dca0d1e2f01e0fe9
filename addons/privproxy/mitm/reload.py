"""PolicyReloader: watch filters.yaml and swap in a valid new version; a broken edit keeps the last good rules.

Empty, comment-only and version-less files are broken edits too (policy.from_text refuses them): a truncating
editor's save or an empty ConfigMap key read mid-write keeps the previous rules, and the complete file, whose
size and mtime differ, is picked up on a later poll.
"""

from __future__ import annotations

import asyncio
import logging
import os

from mitmproxy import ctx

from privproxy import policy
from privproxy.errors import ConfigError, ConfigErrors
from privproxy.mitm.options import config_path
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Result

logger = logging.getLogger(__name__)
POLL_SECONDS = 1.0


class PolicyReloader:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self._task: asyncio.Task[None] | None = None
        self._seen: tuple[int, int, int] | None = None

    def _stamp(self) -> tuple[int, int, int] | None:
        path = config_path(ctx.options.privproxy_config)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def running(self) -> None:
        self._seen = self._stamp()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                self.check()
            except Exception as e:  # noqa: BLE001 - the watcher must outlive any surprise
                logger.error("privproxy: config watcher error (%s)", type(e).__name__)

    def check(self) -> bool | None:
        """Reload when the file changed: True swapped, False kept the old rules, None nothing to do."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        self._seen = stamp
        path = config_path(ctx.options.privproxy_config)
        assert path is not None
        try:
            new = policy.load(path)
        except (ConfigError, ConfigErrors) as e:
            self.shared.metrics.reload(Result.FAILURE)
            logger.error("privproxy: %s is invalid, keeping the previous rules:\n%s", path, e)
            return False
        if ctx.options.privproxy_require_secrets and (missing := policy.missing_secrets(new)):
            self.shared.metrics.reload(Result.FAILURE)
            logger.error("privproxy: %s names secrets this process does not have, keeping the previous rules: %s",
                         path, "; ".join(missing))
            return False
        if self.shared.policy is not None and new.sha256 == self.shared.policy.sha256:
            return None
        self.shared.swap(new)
        self.shared.load_geo(strict=False)
        self.shared.metrics.reload(Result.SUCCESS)
        logger.warning("privproxy: reloaded %s (sha256 %s); protections switched off: %s", path, new.sha256[:12],
                       ", ".join(new.disabled) or "none")
        for w in new.warnings:
            logger.warning(w)
        return True

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
