"""The config loader under fuzzing: whatever filters.yaml holds, the answer is the rules or a ConfigError with
a position, never another exception (a crash at reload would keep stale rules silently)."""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproxy import detectors, policy, protections, vendors
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


# Weakenings of shipped protections, mixed with random `disable:` lists: a file either is refused, or every
# protection it weakens is in `disabled` (what check, report and the metric show), never silently off.
WEAKENINGS = {
    "https": {"redirect": False, "hsts": {"max_age": 0}},
    "unknown_fields": "keep",
    "report_only": True,
    "ip_truncation": {"ipv4_prefix": 32},
    "beacons": {"vendors": ["ga4"], "roles": {"client_id": "keep"}},
    "consent": {"honor_gpc": False, "tcf_cookie": ""},
    "detectors": {"enabled": ["email"], "actions": {"email": "hash"}},
    "sensitive_paths": [{"id": "health", "pattern": "/h/**"}, {"id": "new", "pattern": "/n/**"}],
    "rules": [{"id": "click-ids", "action": "hash", "scopes": ["query"], "names": ["gclid"]},
              {"id": "mine", "action": "keep", "scopes": ["cookie", "query"], "names": ["_ga", "uid", "_hj*"]},
              {"id": "eu", "action": "drop", "scopes": ["query"], "names": ["email"], "regions": ["EU"]}],
}
BASE = policy.from_text(policy.DEFAULT_FILE.read_text(), "shipped", secret=b"s", baseline=False)


NEEDED = {  # what each entry above switches off
    "https": {"https-redirect", "hsts"}, "unknown_fields": {"unknown-fields"}, "report_only": {"report-only"},
    "ip_truncation": {"ip-truncation"}, "consent": {"signal:gpc", "signal:tcf"}, "sensitive_paths": {"health"},
    "beacons": {"role:client_id"} | {f"vendor:{v}" for v in vendors.VENDORS if v != "ga4"},
    "detectors": {f"detector:{d}" for d in detectors.FINDERS},
    "rules": {"click-ids", "tracking-cookies", "visitor-ids"},
}


@settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(WEAKENINGS)), st.booleans()),
       st.lists(st.sampled_from(sorted(protections.IDS)), max_size=6))
def test_no_protection_is_off_without_being_listed(sections, extra):
    """`sections` maps each weakened section to whether its protections are listed in `disable:`."""
    needed = set().union(*(NEEDED[k] for k in sections)) if sections else set()
    listed = set().union(*(NEEDED[k] for k, named in sections.items() if named)) if sections else set()
    doc = {"version": 1, "disable": sorted(listed | set(extra)), **{k: WEAKENINGS[k] for k in sections}}
    try:
        p = policy.from_text(yaml.safe_dump(doc), "fuzz.yaml", secret=b"s")
    except ConfigErrors as e:
        assert not needed <= set(doc["disable"]), e  # refused only for a weakening nobody named
        assert all(str(x).startswith("fuzz.yaml:") and "to disable: [...]" in str(x) for x in e.errors)
        return
    assert needed <= set(doc["disable"])
    off = {w.protection for w in protections.weakenings(p, BASE, p.rules.rules, p.scrubber.sensitive_paths)}
    assert needed <= set(p.disabled) and off <= set(p.disabled) <= set(doc["disable"])
    removed = {pid for pid in doc["disable"] if pid in (*protections.RULES, *protections.PATHS)} - {
        r.id for r in p.rules.rules} - {sp.id for sp in p.scrubber.sensitive_paths}
    assert removed <= set(p.disabled)
