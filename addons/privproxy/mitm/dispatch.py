"""Hook dispatch for `privproxy run`'s own Master: each hook goes straight to the addons that have it.

mitmproxy's AddonManager walks the whole chain for every hook, and again for the `update` hook that follows
every flow hook, opening a coroutine, a generator and a context manager per addon on the way: several
hundred objects per request for addons that mostly have no such hook. This subclass resolves, once per hook
name, the list of callables the chain has for it (cleared whenever an addon is added or removed), and calls
them with the same error handling: an exception is logged and the next addon still runs, AddonHalt stops the
event, OptionsError propagates. Only the Master that `privproxy run` builds uses it; `mitmdump -s` keeps
mitmproxy's own.

`lifecycle_now` runs a hook without a coroutine: when every callable returns at once, the hook is over when it
returns (internals.InlineHookHandler then hands the layer its HookCompleted without a task); an awaitable from
one of them leaves the rest of the hook, in order, to an awaitable it returns.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks

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

    def trigger_now(self, event: hooks.Hook, args: list[Any] | None = None) -> Awaitable[None] | None:
        """Calls the event's callables in order (with `args`, the event's, when the caller has them). None when
        all of them have returned; else an awaitable that awaits what one returned and then calls the rest (each
        awaited in turn), which the caller must await."""
        funcs = self.callables(event)
        if not funcs:
            return None
        if args is None:
            args = hook_args(event)
        for i, func in enumerate(funcs):
            try:
                res = func(*args)
            except exceptions.AddonHalt:
                return None
            except exceptions.OptionsError:
                raise
            except Exception:  # noqa: BLE001 - logged with its traceback; the next addon still runs (mitmproxy's rule)
                _addon_error()
                continue
            if res is not None and inspect.isawaitable(res):
                return _rest(res, funcs[i + 1:], args)
        return None

    async def trigger_event(self, event: hooks.Hook) -> None:
        rest = self.trigger_now(event)
        if rest is not None:
            await rest

    def lifecycle_now(self, event: hooks.Hook) -> tuple[Any, Awaitable[None] | None]:
        """mitmproxy's handle_lifecycle (the hook, then `update` for a flow) as far as it runs at once: the
        hook's argument, and None or the awaitable that finishes it."""
        args = hook_args(event)
        message = args[0] if args else None
        rest = self.trigger_now(event, args)
        if isinstance(message, flow.Flow) and self._updates():
            if rest is None:
                rest = self.trigger_now(hooks.UpdateHook([message]))
            else:
                rest = _then(rest, lambda: self.trigger_event(hooks.UpdateHook([message])))
        return message, rest

    def _updates(self) -> list[Callable]:
        """The `update` callables (usually none: then no UpdateHook is built after each flow hook)."""
        funcs = self._hooks.get("update")
        return self.callables(hooks.UpdateHook([])) if funcs is None else funcs

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        _, rest = self.lifecycle_now(event)
        if rest is not None:
            await rest


def hook_args(event: hooks.Hook) -> list[Any]:
    """`event.args()`: its fields' values in order (the names looked up once per hook class, not with
    dataclasses.fields on every call)."""
    names = _FIELDS.get(type(event))
    if names is None:
        if type(event).args is not hooks.Hook.args:
            return event.args()  # a hook class with args of its own
        names = _FIELDS[type(event)] = tuple(f.name for f in dataclasses.fields(event))  # type: ignore[arg-type]
    return [getattr(event, name) for name in names]


_FIELDS: dict[type, tuple[str, ...]] = {}


def _addon_error() -> None:
    etype, value, tb = sys.exc_info()
    logger.error(f"Addon error: {value}", exc_info=(etype, value, tb))


async def _rest(pending: Awaitable[object], funcs: list[Callable], args: list[Any]) -> None:
    for func in (None, *funcs):
        try:
            res = pending if func is None else func(*args)
            if res is not None and inspect.isawaitable(res):
                await res
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception:  # noqa: BLE001 - logged with its traceback; the next addon still runs (mitmproxy's rule)
            _addon_error()


async def _then(first: Awaitable[None], second: Callable[[], Awaitable[None]]) -> None:
    await first
    await second()
