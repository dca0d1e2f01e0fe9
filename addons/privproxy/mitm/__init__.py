"""mitmproxy adapters: thin addon classes over privproxy's plain-Python core.

List order is the data flow: options and policy, then classify (client, site), then HTTPS enforcement,
then the log record, then metrics that read what the others decided; the upstream timer starts last, when
the request leaves for the origin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from privproxy.mitm.access_log import AccessLog
from privproxy.mitm.exporter import MetricsExporter
from privproxy.mitm.filter import PrivacyFilter
from privproxy.mitm.https import EnforceHttps
from privproxy.mitm.options import Options
from privproxy.mitm.reload import PolicyReloader
from privproxy.mitm.runtime import Runtime
from privproxy.mitm.upstream_timeout import UpstreamTimeout

logger = logging.getLogger(__name__)

# Hooks whose errors must reach mitmproxy: an invalid option is refused there, with the message.
PROPAGATE = frozenset({"load", "configure"})


def addons(rt: Runtime | None = None) -> list[object]:
    rt = rt or Runtime()
    return [Options(rt), PrivacyFilter(rt), EnforceHttps(rt), AccessLog(rt), MetricsExporter(rt), PolicyReloader(rt),
            UpstreamTimeout()]


class Privproxy:
    """privproxy's addons as one mitmproxy addon.

    mitmproxy dispatches every hook, and an `update` after each flow hook, to every registered addon through
    a coroutine and an error guard: seven addons cost about a hundred dispatches per request, as much CPU as
    all of privproxy's filtering. This addon calls the components' hooks directly, in data-flow order, and
    keeps their isolation: an error in one component's hook is logged and the next still runs (each hook
    fails closed by itself), except in load and configure, where mitmproxy must see it.
    """

    name = "privproxy"

    def __init__(self, components: Sequence[object]) -> None:
        self.components = list(components)
        from mitmproxy import hooks

        for hook in hooks.all_hooks:
            fns = [getattr(c, hook) for c in self.components if callable(getattr(c, hook, None))]
            if fns:
                setattr(self, hook, self._dispatch(hook, fns))

    @staticmethod
    def _dispatch(hook: str, fns: list[Callable[..., object]]) -> Callable[..., None]:
        if hook in PROPAGATE:
            def call_all(*args) -> None:
                for fn in fns:
                    fn(*args)
            return call_all

        def guarded(*args) -> None:
            for fn in fns:
                try:
                    fn(*args)
                except Exception as e:  # noqa: BLE001 - one component's failure must not skip the next (e.g. the log record)
                    logger.error("privproxy: %s hook of %s failed (%s)", hook, type(fn.__self__).__name__,
                                 type(e).__name__)
        return guarded


def addon(rt: Runtime | None = None, extra: Sequence[object] = ()) -> Privproxy:
    """The one addon `privproxy run` and `mitmdump -s` load."""
    return Privproxy([*addons(rt), *extra])
