"""privproxy run's hook dispatch: same results as mitmproxy's AddonManager, without walking the chain."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions, hooks, master, options
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from privproxy.mitm.dispatch import DirectAddonManager


class Recorder:
    def __init__(self, name: str, calls: list[str], fail: bool = False, halt: bool = False) -> None:
        self.name, self.calls, self.fail, self.halt = name, calls, fail, halt

    def request(self, flow) -> None:
        self.calls.append(self.name)
        if self.fail:
            raise ValueError("boom")
        if self.halt:
            raise exceptions.AddonHalt()


class AsyncRecorder:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def request(self, flow) -> None:
        await asyncio.sleep(0)
        self.calls.append("async")


class Parent:
    def __init__(self, child) -> None:
        self.addons = [child]


def test_hooks_reach_every_addon_in_order_errors_are_isolated_and_halt_stops(caplog):
    async def scenario():
        m = master.Master(options.Options())
        m.addons = DirectAddonManager(m)
        calls: list[str] = []
        m.addons.add(Recorder("a", calls), Recorder("b", calls, fail=True), Parent(Recorder("child", calls)),
                     AsyncRecorder(calls))
        with caplog.at_level(logging.ERROR):
            await m.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
        assert calls == ["a", "b", "child", "async"]  # b's error logged, the rest still ran
        assert "Addon error: boom" in caplog.text
        assert m.addons.callables(hooks.UpdateHook([])) == []  # nobody has `update`: nothing to walk

        calls.clear()
        halting = Recorder("halt", calls, halt=True)
        m.addons.add(halting)  # the cache follows the chain
        late = Recorder("late", calls)
        m.addons.add(late)
        await m.addons.trigger_event(HttpRequestHook(tflow.tflow()))
        assert calls == ["a", "b", "child", "async", "halt"]  # AddonHalt ends the event
        m.addons.remove(halting)
        calls.clear()
        await m.addons.trigger_event(HttpRequestHook(tflow.tflow()))
        assert calls == ["a", "b", "child", "async", "late"]

    asyncio.run(scenario())


def test_options_errors_propagate():
    class Bad:
        def request(self, flow) -> None:
            raise exceptions.OptionsError("no")

    async def scenario():
        m = master.Master(options.Options())
        m.addons = DirectAddonManager(m)
        m.addons.add(Bad())
        with pytest.raises(exceptions.OptionsError):
            await m.addons.trigger_event(HttpRequestHook(tflow.tflow()))

    asyncio.run(scenario())


class Updates:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def update(self, flows) -> None:
        self.calls.append("update")


def test_lifecycle_now_finishes_at_once_or_hands_back_the_rest_in_order():
    async def scenario():
        m = master.Master(options.Options())
        m.addons = DirectAddonManager(m)
        calls: list[str] = []
        m.addons.add(Recorder("a", calls), Updates(calls))
        f = tflow.tflow()
        data, rest = m.addons.lifecycle_now(HttpRequestHook(f))
        assert data is f and rest is None and calls == ["a", "update"]  # the hook and its update, done

        m.addons.add(AsyncRecorder(calls), Recorder("z", calls))
        calls.clear()
        data, rest = m.addons.lifecycle_now(HttpRequestHook(f))
        assert calls == ["a"] and rest is not None  # the rest waits for the awaitable, in order
        await rest
        assert calls == ["a", "async", "z", "update"]

        calls.clear()
        await m.addons.handle_lifecycle(HttpRequestHook(f))  # mitmproxy's entry point: the same
        assert calls == ["a", "async", "z", "update"]

    asyncio.run(scenario())


def test_hook_args_equal_mitmproxys_for_every_hook_class():
    from privproxy.mitm.dispatch import hook_args

    for cls in hooks.all_hooks.values():
        fields = getattr(cls, "__dataclass_fields__", {})
        event = cls(*[object() for _ in fields])
        assert hook_args(event) == event.args(), cls
        assert hook_args(event) == event.args(), cls  # and from the cache
