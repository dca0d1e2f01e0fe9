"""PolicyReloader: watch filters.yaml and swap in a valid new version; a broken edit keeps the last good rules.
SIGHUP (systemd's ExecReload) re-reads filters.yaml and the certificate files at once, and never stops the proxy.

Empty, comment-only and version-less files are broken edits too (policy.from_text refuses them): a truncating
editor's save or an empty ConfigMap key read mid-write keeps the previous rules, and the complete file, whose
size and mtime differ, is picked up on a later poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from mitmproxy import ctx

from privproxy import policy
from privproxy.errors import ConfigError, ConfigErrors
from privproxy.mitm.certificates import Certificates
from privproxy.mitm.log_redaction import OPERATOR_MESSAGE
from privproxy.mitm.options import config_path
from privproxy.mitm.shared import SharedState, poll_forever
from privproxy.outcome import Result

logger = logging.getLogger(__name__)
POLL_SECONDS = 1.0


class PolicyReloader:
    def __init__(self, shared: SharedState, certificates: Certificates | None = None) -> None:
        self.shared = shared
        self.certificates = certificates
        self._task: asyncio.Task[None] | None = None
        self._seen: tuple[int, int, int] | None = None
        self.watch = True  # poll filters.yaml; a worker of `run --workers` reloads on its supervisor's SIGHUP only

    def _stamp(self) -> tuple[int, int, int] | None:
        path = config_path(ctx.options.privproxy_config)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self, loader) -> None:
        self._handle_sighup()  # as early as possible: SIGHUP's default action ends the process

    def running(self) -> None:
        self._handle_sighup()
        self._seen = self._stamp()
        if self.watch:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def _handle_sighup(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.hangup)
        except (RuntimeError, ValueError, NotImplementedError, AttributeError):
            pass  # no running loop yet (running() tries again), not the main thread, or no SIGHUP (Windows)

    def hangup(self) -> None:
        """SIGHUP: re-read filters.yaml and every certificate file now, whether or not they look changed."""
        path = config_path(ctx.options.privproxy_config)
        if path is None:
            logger.warning("privproxy: SIGHUP: re-reading the certificate files (no filters.yaml: the built-in "
                           "rules stay)", extra=OPERATOR_MESSAGE)
        else:
            logger.warning("privproxy: SIGHUP: re-reading %s and the certificate files", path,
                           extra=OPERATOR_MESSAGE)
        try:
            if self.check(force=True) is None and path is not None:
                logger.warning("privproxy: %s unchanged", path, extra=OPERATOR_MESSAGE)
        except Exception as e:  # noqa: BLE001 - a reload request must never stop the proxy
            logger.error("privproxy: reloading the rules failed (%s)", type(e).__name__)
        if self.certificates is not None:
            try:
                self.certificates.check(force=True)
            except Exception as e:  # noqa: BLE001 - a reload request must never stop the proxy
                logger.error("privproxy: reloading the certificates failed (%s)", type(e).__name__)

    async def _watch(self) -> None:
        await poll_forever(self.check, POLL_SECONDS, "config")

    def check(self, force: bool = False) -> bool | None:
        """Reload when the file changed (or with force): True swapped, False kept the old rules, None nothing to
        do (no file, or the same rules)."""
        path = config_path(ctx.options.privproxy_config)
        stamp = self._stamp()
        if stamp is None and force and path is not None:
            self.shared.metrics.reload(Result.FAILURE)
            logger.error("privproxy: %s cannot be read, keeping the previous rules", path)
            return False
        if stamp is None or (stamp == self._seen and not force):
            return None
        self._seen = stamp
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
