"""The config loader under fuzzing: whatever filters.yaml holds, the answer is the rules or a ConfigError with
a position, never another exception (a crash at reload would keep stale rules silently)."""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproxy import policy
from privproxy.errors import ConfigError, ConfigErrors

N = int(os.environ.get("PRIVPROXY_FUZZ_EXAMPLES", "200"))
SECTIONS = list(policy.SECTIONS)
KEYS = ["id", "action", "scopes", "names", "controls", "why", "regions", "pattern", "replace", "hosts", "upstream",
        "ipv4_prefix", "ipv6_prefix", "trusted_proxies", "retention_days", "format", "keys", "env", "vendors",
        "roles", "paths", "database", "granularity", "small_cell", "k", "enabled", "cookie", "redirect"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["drop", "hash", "query", "C2", "EU", "/x/**", "10.0.0.0/8",
                                                           "json", "daily", "ga4", "k1", "PRIVPROXY_SECRET"]))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                    st.dictionaries(st.sampled_from(KEYS), c, max_size=4)),
                      max_leaves=15)


def load(text: str) -> None:
    try:
        policy.from_text(text, "fuzz.yaml")
    except (ConfigError, ConfigErrors) as e:
        assert "fuzz.yaml" in str(e)


@settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SECTIONS + ["version", "bogus"]), values, max_size=6))
def test_structured_documents(doc):
    load(yaml.safe_dump({"version": 1, **doc}))


@settings(max_examples=N, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    load(text)
