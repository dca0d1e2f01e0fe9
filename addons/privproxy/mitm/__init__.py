"""mitmproxy adapters: thin addon classes over privproxy's plain-Python core.

List order is the data flow: options and policy, then classify (client, site), then the analytics gateway (beacons
and scripts privproxy answers from the vendors, mitm.gateway), then the ACME CA's validations
(answered once the request is read), then HTTPS enforcement, then the log record, then metrics that read what the
others decided; the certificates and the files' watchers; the upstream timer starts last, when the request leaves
for the origin.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

from privproxy.mitm.access_log import AccessLog
from privproxy.mitm.acme import AcmeCertificates
from privproxy.mitm.certificates import Certificates
from privproxy.mitm.exporter import MetricsExporter
from privproxy.mitm.filter import PrivacyFilter
from privproxy.mitm.gateway import VendorGateway
from privproxy.mitm.https import EnforceHttps
from privproxy.mitm.options import Options
from privproxy.mitm.reload import PolicyReloader
from privproxy.mitm.shared import SharedState
from privproxy.mitm.upstream_timeout import UpstreamTimeout

logger = logging.getLogger(__name__)

# Hooks whose errors must reach mitmproxy: an invalid option is refused there, with the message.
PROPAGATE = frozenset({"load", "configure"})


def addons(shared: SharedState | None = None) -> list[object]:
    s = shared or SharedState()
    certificates = Certificates(s)
    return [Options(s), PrivacyFilter(s), VendorGateway(s), AcmeCertificates(s, certificates), EnforceHttps(s),
            AccessLog(s), MetricsExporter(s), certificates, PolicyReloader(s, certificates), UpstreamTimeout()]


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

        def failed(fn: Callable[..., object], e: Exception) -> None:
            logger.error("privproxy: %s hook of %s failed (%s)", hook, type(fn.__self__).__name__, type(e).__name__)

        async def rest(pending: Awaitable[object], fn: Callable[..., object], later: list[Callable[..., object]],
                       args: tuple[object, ...]) -> None:
            # A component handed work to a thread (a large beacon): the ones after it wait for it, in order.
            try:
                await pending
            except Exception as e:  # noqa: BLE001 - one component's failure must not skip the next
                failed(fn, e)
            for nxt in later:
                try:
                    res = nxt(*args)
                    if res is not None and inspect.isawaitable(res):
                        await res
                except Exception as e:  # noqa: BLE001 - one component's failure must not skip the next
                    failed(nxt, e)

        def guarded(*args) -> Awaitable[None] | None:
            for i, fn in enumerate(fns):
                try:
                    res = fn(*args)
                except Exception as e:  # noqa: BLE001 - one component's failure must not skip the next (e.g. the log record)
                    failed(fn, e)
                    continue
                if res is not None and inspect.isawaitable(res):
                    return rest(res, fn, fns[i + 1:], args)  # mitmproxy awaits what a hook returns
            return None
        return guarded


def addon(shared: SharedState | None = None, extra: Sequence[object] = ()) -> Privproxy:
    """The one addon `privproxy run` and `mitmdump -s` load."""
    return Privproxy([*addons(shared), *extra])
