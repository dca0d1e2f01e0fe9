"""Hook dispatch for `privproxy run`'s own Master: each hook goes straight to the addons that have it.

mitmproxy's AddonManager walks the whole chain for every hook, and again for the `update` hook that follows
every flow hook, opening a coroutine, a generator and a context manager per addon on the way: several
hundred objects per request for addons that mostly have no such hook. This subclass resolves, once per hook
name, the list of callables the chain has for it (cleared whenever an addon is added or removed), and calls
them with the same error handling: an exception is logged and the next addon still runs, AddonHalt stops the
event, OptionsError propagates. Only the Master that `privproxy run` builds uses it; `mitmdump -s` keeps
mitmproxy's own.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable

from mitmproxy import addonmanager, exceptions, hooks

from privproxy.mitm import internals

logger = logging.getLogger("mitmproxy.addonmanager")  # where mitmproxy's own addon errors are logged


class DirectAddonManager(addonmanager.AddonManager):
    def __init__(self, master) -> None:
        super().__init__(master)
        self._hooks: dict[str, list[Callable]] = {}

    def register(self, addon):
        self._hooks.clear()
        return super().register(addon)

    def remove(self, addon) -> None:
        self._hooks.clear()
        super().remove(addon)

    def clear(self) -> None:
        self._hooks.clear()
        super().clear()

    def callables(self, event: hooks.Hook) -> list[Callable]:
        funcs = self._hooks.get(event.name)
        if funcs is None:
            funcs = [func for top in self.chain for func in internals.addon_hooks(self, top, event)]
            self._hooks[event.name] = funcs
        return funcs

    async def trigger_event(self, event: hooks.Hook) -> None:
        funcs = self.callables(event)
        if not funcs:
            return
        args = event.args()
        for func in funcs:
            try:
                res = func(*args)
                if res is not None and inspect.isawaitable(res):
                    await res
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception:
                etype, value, tb = sys.exc_info()
                logger.error(f"Addon error: {value}", exc_info=(etype, value, tb))
