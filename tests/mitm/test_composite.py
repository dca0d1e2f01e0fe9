"""The one-addon composite: every component hook runs, in data-flow order, isolated from the others' errors,
except that option errors still reach mitmproxy (C2: the log record is written even if metrics fail)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from privproxy.mitm import Privproxy


class Component:
    def __init__(self, name: str, calls: list[str], fail: set[str] = frozenset()) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def request(self, flow) -> None:
        self.calls.append(f"{self.name}.request")
        if "request" in self.fail:
            raise RuntimeError("boom")

    def configure(self, updated) -> None:
        self.calls.append(f"{self.name}.configure")
        if "configure" in self.fail:
            raise exceptions.OptionsError("bad option")


def test_hooks_run_in_order_and_a_failing_component_does_not_skip_the_next(caplog):
    calls: list[str] = []
    p = Privproxy([Component("a", calls, {"request"}), object(), Component("b", calls)])
    p.request(object())
    assert calls == ["a.request", "b.request"]
    assert "request hook of Component failed (RuntimeError)" in caplog.text
    assert not hasattr(p, "response")  # only hooks some component has


def test_option_errors_propagate_to_mitmproxy():
    calls: list[str] = []
    p = Privproxy([Component("a", calls, {"configure"}), Component("b", calls)])
    with taddons.context(p) as tctx:
        with pytest.raises(exceptions.OptionsError, match="bad option"):
            tctx.configure(p)
