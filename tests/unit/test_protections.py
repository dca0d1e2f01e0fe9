"""The shipped protections: a fixed, documented set of ids that matches the shipped file, merged by id and
compared setting by setting (issue 17 item 6)."""

from __future__ import annotations

import re

import pytest

from privproxy import detectors, policy, protections, vendors
from privproxy.fields import Rule
from privproxy.vendors.base import CONFIGURABLE_ROLES
from privproxy.yamlsrc import load_text
from tests.helpers import REPO


def test_rule_and_path_ids_are_the_shipped_ones():
    shipped = policy.from_text((REPO / "filters.yaml").read_text(), "filters.yaml", secret=b"s", baseline=False)
    assert tuple(protections.RULES) == tuple(r.id for r in shipped.rules.rules)
    assert tuple(protections.PATHS) == tuple(sp.id for sp in shipped.scrubber.sensitive_paths)
    assert not set(protections.RULES) & set(protections.PATHS)  # one namespace for `disable:`


def test_the_id_set_covers_every_detector_vendor_and_role():
    ids = set(protections.IDS)
    assert {f"detector:{d}" for d in detectors.FINDERS} <= ids
    assert {f"vendor:{v}" for v in vendors.VENDORS} <= ids
    assert {f"role:{r}" for r in CONFIGURABLE_ROLES} <= ids
    assert all(re.fullmatch(r"[a-z0-9_:-]+", pid) for pid in ids)  # safe as metric label values


def test_every_id_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = [pid for pid in protections.IDS if f"`{pid}`" not in readme]
    assert not missing, missing


def test_the_shipped_file_does_not_weaken_itself():
    p = policy.default()
    base = policy.from_text((REPO / "filters.yaml").read_text(), "f", secret=b"s", baseline=False)
    assert protections.weakenings(p, base, p.rules.rules, p.scrubber.sensitive_paths) == []
    assert p.disabled == () and p.inherited == ()


@pytest.mark.parametrize("action, shipped, ok", [
    ("drop", "hash", True), ("redact", "drop", True), ("hash", "hash", True), ("generalize", "generalize", True),
    ("hash", "drop", False), ("keep", "hash", False), ("truncate", "generalize", False), ("hash", "truncate", False),
])
def test_at_least(action, shipped, ok):
    assert protections.at_least(action, shipped) is ok


@pytest.mark.parametrize("pattern, path", [("/health/**", "/health/a/b"), ("/careers/apply/**", "/careers/apply/a/b"),
                                           ("/a/*/b", "/a/a/b"), ("/inquiry", "/inquiry")])
def test_witness_is_matched_by_its_pattern(pattern, path):
    from privproxy.scrub import sensitive_regex

    assert protections.witness(pattern) == path and sensitive_regex(pattern).fullmatch(path)


def test_merge_keeps_the_files_order_then_the_unmentioned_shipped_ones():
    base = policy.default()
    mine = (Rule("mine", "drop", frozenset({"query"}), ("x",)), Rule("secrets", "drop", frozenset({"query"}), ("t",)))
    rules, paths, inherited = protections.merge(mine, (), base, frozenset({"click-ids", "health"}))
    assert [r.id for r in rules] == ["mine", "secrets", "contact-params", "personal-names", "visitor-ids",
                                     "tracking-cookies", "device-detail"]
    assert rules[0] is mine[0] and all(r.line == 0 for r in rules[2:])
    assert [sp.id for sp in paths] == ["medical", "recruiting", "careers-apply", "inquiry"]
    assert inherited == ("contact-params", "personal-names", "visitor-ids", "tracking-cookies", "device-detail",
                         "medical", "recruiting", "careers-apply", "inquiry")


def test_locate_finds_keys_items_and_the_nearest_present_parent():
    data = load_text("version: 1\nhttps:\n  hsts: {max_age: 5}\nrules:\n  - {id: a}\n  - {id: b}\n", "f.yaml")
    assert protections.locate(data, "https.hsts.max_age") == (3, 19)
    assert protections.locate(data, "https.redirect") == (3, 3)  # absent: its section
    assert protections.locate(data, "rules[1]") == (6, 5)
    assert protections.locate(data, "beacons.vendors") == (1, 1)


def test_hint_names_every_id():
    assert protections.hint(["hsts"]).startswith("keep the shipped setting, or add hsts to disable: [...]")
    assert "add vendor:ga4, vendor:adobe to disable: [...] at the top level to switch them off" in \
        protections.hint(["vendor:ga4", "vendor:adobe"])
