"""The `beacons:` section: which vendors and paths are beacons, and what each role does without consent (C4, C6)."""

from __future__ import annotations

import pytest

from privproxy import beacons, schema, vendors
from privproxy.errors import ConfigErrors
from privproxy.vendors.base import CONFIGURABLE_ROLES, Limits
from privproxy.yamlsrc import load_text, root


def parse(text: str) -> beacons.Settings:
    top = root(load_text(text, "f.yaml"), "f.yaml")
    got = beacons.parse(top.mapping({"beacons"}).get("beacons"))
    top.errors.raise_if_any()
    return got


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        parse(text)
    return [str(x) for x in e.value.errors]


@pytest.mark.parametrize("text", ["{}\n", "beacons:\n", "beacons: {}\n"])
def test_left_out_it_is_the_settings_defaults(text):
    s = parse(text)
    assert s == beacons.Settings()
    assert s.roles == CONFIGURABLE_ROLES and s.enabled == frozenset(vendors.VENDORS) and s.limits == Limits()


def test_every_key():
    s = parse("beacons:\n  vendors: [ga4, matomo]\n  paths: {'*/tracker.php': matomo}\n  roles: {contact: redact}\n"
              "  max_body_kb: 64\n  max_decompressed_kb: 256\n")
    assert s.enabled == {"ga4", "matomo"} and s.paths == (("*/tracker.php", "matomo"),)
    assert s.roles == {**CONFIGURABLE_ROLES, "contact": "redact"}
    assert s.limits == Limits(max_body=64 * 1024, max_decompressed=256 * 1024)
    assert s.codec_for("/x/tracker.php").name == "matomo" and s.codec_for("/track") is None


def test_mistakes_are_positioned_with_a_fix():
    assert errors_of("beacons:\n  vendors: [gaa4]\n") == [
        "f.yaml:2:13: beacons.vendors[0]: `gaa4` is not allowed — did you mean `ga4`?"]
    assert errors_of("beacons:\n  paths: {tracker.php: matomo}\n")[0] == (
        "f.yaml:2:24: beacons.paths.tracker.php: `tracker.php` is not a path — collection paths start with / "
        "(or * to match any prefix)")
    assert "beacons.roles.contactt" in errors_of("beacons:\n  roles: {contactt: drop}\n")[0]
    assert errors_of("beacons:\n  max_body_kb: 0\n") == [
        "f.yaml:2:16: beacons.max_body_kb: 0 is out of range — use a value from 1 to None"]


def test_the_schema_states_the_settings_defaults():
    d = beacons.Settings()
    assert schema.node("beacons") is beacons.SCHEMA
    assert {r: schema.node(f"beacons.roles.{r}").default for r in d.roles} == d.roles
    assert schema.node("beacons.vendors").default == list(vendors.VENDORS)
    assert schema.node("beacons.max_body_kb").default * 1024 == d.limits.max_body
    assert schema.node("beacons.max_decompressed_kb").default * 1024 == d.limits.max_decompressed
