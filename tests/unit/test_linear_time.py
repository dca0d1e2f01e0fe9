"""Every parser and scrubbing step a request passes through is linear in its input, and one beacon's cost is bounded
(issue 17, Deliver 9: "One request freezes every other"). Each super-linear path bench/pathological.py found has a
growth test here (a megabyte-scale input against a sixteenth of it, in the same run) and a test that the linear
rewrite reads what the old code read; tests/e2e/test_stalls.py drives the same shapes through the real proxy."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import re
import time
from collections.abc import Callable
from urllib.parse import quote, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import beacon, generalize, truncate, vendors
from privproxy.fields import REDACTED, Echo, Echoes, Rule, RuleSet, _still_in
from privproxy.vendors import matomo
from privproxy.vendors.base import (MAX_FIELDS, MAX_HIT_LINES, Beacon, CodecError, Limits, Params, check_depth,
                                    lines_decoded)
from tests.unit.vendors.test_codecs import SCRUBBER, SETTINGS

KB = 1024


def _best_of(f: Callable[[], object], runs: int = 2) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def growth_is_linear(f: Callable[[object], object], make: Callable[[int], object], big: int = 1 << 20) -> None:
    """f(make(big)) against f(make(big / 16)), in the same run: linear work takes about 16 times as long,
    quadratic 256 times; 64 leaves room for caches and a busy machine. The two are measured in turns (up to
    three rounds, the best of each counts), so a load that comes and goes weighs on both; below 5 ms the small
    input counts as 5 ms, so timer noise cannot fail a fast path."""
    small_input, big_input = make(big // 16), make(big)
    t_small = t_big = float("inf")
    gc.disable()
    try:
        for _ in range(3):
            t_small = min(t_small, _best_of(lambda: f(small_input), runs=1))
            t_big = min(t_big, _best_of(lambda: f(big_input), runs=1))
            if t_big <= 64 * max(t_small, 5e-3):
                return
    finally:
        gc.enable()
    raise AssertionError(f"{t_big:.3f} s for the big input, more than 64 times {t_small:.4f} s for a sixteenth")


# --- identifier echoes: copies in another case or %-encoded, replaced without a pattern per identifier --------
def _old_pattern(value: str) -> re.Pattern[str]:
    """The pattern fields.Echo used to build: each character as itself or %-encoded, a space also as `+`."""
    alternatives = []
    for c in value:
        forms = [re.escape(c), "".join(f"%{b:02x}" for b in c.encode("utf-8"))]
        if c == " ":
            forms.append(r"\+")
        alternatives.append("(?:" + "|".join(forms) + ")")
    return re.compile("".join(alternatives), re.I)


def _old_replace(text: str, echoes: list[Echo]) -> str:
    out = text
    for e in echoes:
        out = out.replace(e.value, e.replacement)
    if _still_in(out, echoes):
        for e in echoes:
            out = _old_pattern(e.value).sub(lambda _, r=e.replacement: r, out)
        if _still_in(out, echoes):
            out = REDACTED
    return out


def _echoes(*values: str) -> Echoes:
    e = Echoes(limit=10**9)
    for i, v in enumerate(values):
        e.learn(v, f"pp_{i}", "ids", "hash")
    return e


def test_a_copy_after_a_long_near_copy_costs_a_pass_not_a_pass_per_position():
    # `uid=aaaa...ab` and a value of `A` with the identifier at its end: the old pattern, tried at every position,
    # reread the run each time (16 KB + 48 KB: 9 s in the proxy).
    def make(n: int) -> tuple[Echoes, str]:
        uid = "a" * (n // 4) + "b"
        return _echoes(uid), "A" * n + uid.upper()

    growth_is_linear(lambda args: args[0].find(args[1]), make)


def test_a_copy_percent_encoded_after_a_long_near_copy_is_linear_too():
    def make(n: int) -> tuple[Echoes, str]:
        uid = "a" * (n // 4) + "|"
        return _echoes(uid), "%61" * (n // 3) + quote(uid, safe="")

    growth_is_linear(lambda args: args[0].find(args[1]), make)


_ID_CHARS = "abAB01|é +.%"


@settings(max_examples=500, deadline=None)
@given(value=st.text(alphabet=_ID_CHARS, min_size=8, max_size=12), data=st.data())
def test_copies_are_replaced_where_they_stand_or_the_value_is_redacted(value, data):
    e = _echoes(value)
    if value not in e.known:  # a placeholder or too short: nothing learned
        return
    echo = e.known[value]
    # `+` for a space only where that spelling decodes to the identifier: `a++` is no copy of `a+ ` to the search
    # (it reads `a  `), nor `0+%0a` of `0 %0a` (it reads `0 \n`), whatever a pattern of alternatives made of them
    plus = value.replace(" ", "+")
    spellings = [value, value.upper(), value.lower(), quote(value, safe=""), quote(value.upper(), safe="").lower(),
                 quote(value, safe="").replace("%20", "+"), *([plus] if unquote_plus(plus) == value else [])]
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(spellings), st.text(alphabet="xyz& =", max_size=4)),
                                max_size=5))
    text = "&".join(pieces)  # a separator: `%` at the end of one piece and `0a` after it would be an escape
    got = e.find(text)
    if got is None:
        assert not _still_in(text, [echo])
        return
    after = got[0]
    assert after == REDACTED or not _still_in(after, [echo])  # no copy left, whatever happened
    if after != REDACTED and text != value:
        # each copy replaced whole where it stands (the old pattern left `25` of a `%25` it read as `%` behind)
        expected = "&".join(echo.replacement if p in spellings else p for p in pieces)
        assert after in (expected, _old_replace(text, [echo])), (text, after, expected)


# --- PostHog $elements_chain: name="value" attributes ---------------------------------------------------------
_OLD_ATTR = re.compile(r'([A-Za-z0-9_-]+)="((?:[^"\\]|\\.)*)"', re.S)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet='ab_-="\\ ;.:\n', max_size=40))
def test_attribute_lists_split_as_the_old_pattern_split_them(text):
    assert beacon._ATTR.split(text) == _OLD_ATTR.split(text)


@pytest.mark.parametrize("unit,head", [("a", ""), ("a", 'a="'), ('a="\\', ""), ('="', ""), ('\\"', 'a="')],
                         ids=["name-run", "unclosed-value", "escapes", "empty-names", "escaped-quotes"])
def test_attribute_lists_parse_in_linear_time(unit, head):
    growth_is_linear(beacon.attrs_parse, lambda n: head + unit * (n // len(unit)))


# --- Matomo names as PHP reads them ------------------------------------------------------------------------------
def _old_php_name(name: str) -> str | None:
    name = name.partition("\0")[0].lstrip(" ")
    base, bracket, rest = name.partition("[")
    base = base.replace(" ", "_").replace(".", "_")
    if not base:
        return None
    if not bracket:
        return base
    if "]" not in rest:
        return base + "_" + rest.replace(" ", "_").replace(".", "_").replace("[", "_")
    out, rest = base, "[" + rest
    while rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            break
        out += rest[:close + 1]
        rest = rest[close + 1:]
    return out


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="a[]. x\0", max_size=24))
def test_php_names_read_as_before(name):
    assert matomo.php_name(name) == _old_php_name(name)


@pytest.mark.parametrize("unit", ["[x]", "[]", "[[]"])
def test_php_names_are_linear(unit):
    growth_is_linear(matomo.php_name, lambda n: "a" + unit * (n // len(unit)))


# --- documents inside a list field, after one that did not decode -------------------------------------------------
def _snowplow_with_contexts(n: int) -> Beacon:
    ctx = {"schema": "iglu:x/y/jsonschema/1-0-0", "data": [{"schema": "iglu:a/b/jsonschema/1-0-0",
                                                            "data": {"note": "member-4711-abcdef"}}]}
    encoded = __import__("base64").urlsafe_b64encode(json.dumps(ctx).encode()).decode().rstrip("=")
    doc = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
           "data": [{"e": "pv", "uid": "member-4711-abcdef", "cx": ["!!not-base64", *[encoded] * n]}]}
    return Beacon("POST", "/com.snowplowanalytics.snowplow/tp2", "", "application/json", "", json.dumps(doc).encode())


def _process(b: Beacon, settings_=SETTINGS) -> beacon.Result:
    codec = vendors.sniff(settings_.codec_for(b.path), b)
    return beacon.process(codec, b, SCRUBBER, settings_, False, [])


def test_contexts_after_a_dropped_one_are_fixed_where_they_now_stand():
    result = _process(_snowplow_with_contexts(3))
    assert result.forward, result.reason
    (event,) = json.loads(result.body)["data"]
    assert len(event["cx"]) == 3  # the undecodable one is gone
    for cx in event["cx"]:
        inner = json.loads(__import__("base64").urlsafe_b64decode(cx + "=" * (-len(cx) % 4)))
        assert "member-4711" not in json.dumps(inner)


def test_contexts_after_a_dropped_one_cost_a_pass_each_not_a_pass_over_the_list(monkeypatch):
    # 12 000 contexts (2 MB): the size limit and the walker's budget would refuse them, so both are out of the way.
    monkeypatch.setattr(beacon, "MAX_WORK", 10**12)
    roomy = dataclasses.replace(SETTINGS, limits=Limits(max_body=8 << 20, max_decompressed=8 << 20))
    growth_is_linear(lambda b: _process(b, roomy), lambda n: _snowplow_with_contexts(n // 170), big=2 << 20)


# --- the structure of a body: values, pairs, hit lines --------------------------------------------------------------
def _old_check_depth(value, limit: int) -> None:
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            raise CodecError("too_deep")
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


_JSON = st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=2)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(max_size=2), inner, max_size=3)),
                     max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(_JSON, st.integers(min_value=0, max_value=4))
def test_depth_is_judged_as_before(value, limit):
    def verdict(f):
        try:
            f(value, limit)
        except CodecError as e:
            return e.reason
        return None

    assert verdict(check_depth) == verdict(_old_check_depth)


def test_too_many_values_lines_or_pairs_are_refused_before_they_are_walked():
    with pytest.raises(CodecError, match="too_large"):
        check_depth([0] * MAX_FIELDS, 32)
    check_depth([0] * (MAX_FIELDS - 1), 32)  # the list itself is a value too
    with pytest.raises(CodecError, match="too_large"):
        Params.parse("a=1&" * MAX_FIELDS)
    with pytest.raises(CodecError, match="too_large"):
        lines_decoded(Beacon("POST", "/g/collect", "v=2", "text/plain", "", b"\n" * MAX_HIT_LINES), Limits(),
                      lambda path: None)
    with pytest.raises(CodecError, match="too_large"):
        check_depth({"a": [{} for _ in range(MAX_FIELDS)]}, 32)


# --- one beacon's work: bounded, and ordinary batches at the size limit within the bound ---------------------------
def _segment_batch(n: int) -> bytes:
    one = {"type": "track", "event": "Order Completed", "userId": "member-4711", "anonymousId": "a-1",
           "messageId": "m-1", "timestamp": "2026-11-29T22:29:22.923Z",
           "properties": {"plan": "gold", "revenue": 42.5, "path": "/checkout", "title": "Checkout",
                          "url": "https://shop.example/checkout?step=2&gclid=CANARY", "referrer": ""},
           "context": {"page": {"path": "/checkout", "referrer": "https://shop.example/cart", "search": "?step=2",
                                "title": "Checkout", "url": "https://shop.example/checkout?step=2"},
                       "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36",
                       "locale": "en-US", "library": {"name": "analytics.js", "version": "next-1.70.0"},
                       "campaign": {"source": "news", "medium": "mail"}}}
    batch = []
    for i in range(n // (len(json.dumps(one)) + 40)):
        m = json.loads(json.dumps(one))
        m["userId"], m["anonymousId"], m["messageId"] = f"member-{i:06d}", f"anon-{i:06d}-x", f"m-{i:08d}"
        batch.append(m)
    return json.dumps({"batch": batch}).encode()


def test_an_ordinary_batch_at_the_body_limit_is_forwarded():
    body = _segment_batch(Limits().max_body - 4 * KB)
    result = _process(Beacon("POST", "/v1/batch", "", "application/json", "", body))
    assert result.forward, result.reason
    assert "member-000001" not in result.body.decode()


@pytest.mark.parametrize("make", [
    lambda: json.dumps({"type": "track", "userId": "u1",
                        "properties": {f"p{i}": "v" for i in range(60_000)}}).encode(),
    lambda: json.dumps({"type": "track", "userId": "u1", "properties": {"x": "a@b." * 450_000}}).encode(),
    lambda: _segment_batch(1900 * KB),
], ids=["tiny-values", "one-long-value", "ordinary-but-2MiB"])
def test_a_beacon_needing_more_than_the_budget_is_refused_as_too_large(make):
    body = gzip.compress(make())
    t0 = time.perf_counter()
    result = _process(Beacon("POST", "/v1/t", "", "application/json", "gzip", body))
    took = time.perf_counter() - t0
    assert not result.forward and result.reason == "too_large", (result.forward, result.reason)
    assert took < 30  # not a timing check: a stall would make the whole run time out instead


# --- caches keep no request-sized keys ----------------------------------------------------------------------------
def test_long_names_and_agents_are_not_memoized():
    rules = RuleSet.build((Rule("ids", "hash", frozenset({"query"}), ("uid",)),))
    rules.find("query", "x" * 100_000)
    assert all(len(name) <= 256 for _, name in rules.memo)
    before = generalize._agent.cache_info().currsize
    assert generalize.user_agent("Mozilla/5.0 " + "x" * 100_000) == "Other (Other)"
    assert generalize._agent.cache_info().currsize == before
    assert generalize.user_agent("curl/8.5.0") == "curl 8 (Other)"
    before = truncate._parse_ip.cache_info().currsize
    assert truncate.parse_ip(" " * 100_000 + "203.0.113.77") is not None  # parsed, not kept
    assert truncate._parse_ip.cache_info().currsize == before


def test_query_allowlist_globs_are_linear_in_the_name():
    from privproxy.query_allowlist import Allowlist

    allow = Allowlist(("*_*_*_id", "utm_*"), active=True)  # several `*`: cubic backtracking in `re`
    growth_is_linear(lambda name: allow.keeps(name), lambda n: "_" * n + "x", big=1 << 16)
