"""filters.yaml parsing: strict schema, FILE:LINE:COL errors with a fix, immutable result (C8, C15)."""

from __future__ import annotations

import dataclasses

import pytest

from privproxy import policy
from privproxy.errors import ConfigError, ConfigErrors
from tests.helpers import REPO


def errors_of(text: str) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        policy.from_text(text, "f.yaml", secret=b"s")
    err = e.value
    return [str(x) for x in err.errors] if isinstance(err, ConfigErrors) else [str(err)]


def test_shipped_file_loads_and_every_rule_names_a_control():
    p = policy.load(REPO / "filters.yaml")
    assert p.rules.rules and all(r.controls for r in p.rules.rules)
    assert p.https.hsts == "max-age=63072000; includeSubDomains"
    assert p.truncation.ipv4_prefix == 24


def test_default_policy_is_the_shipped_file():
    assert policy.default().sha256 == policy.load(REPO / "filters.yaml").sha256


def test_unknown_keys_with_did_you_mean():
    errs = errors_of("version: 1\nhttps:\n  hstss: {}\nrules:\n  - {id: a, action: drop, scopes: [query], nmes: [x]}\n")
    assert errs[0] == "f.yaml:3:3: unknown key `https.hstss` — did you mean `hsts`?"
    assert any(e.startswith("f.yaml:5:") and "`rules[0].nmes`" in e and "did you mean `names`?" in e for e in errs)


def test_wrong_types_and_values():
    errs = errors_of("version: 1\nip_truncation:\n  ipv4_prefix: 40\nhttps:\n  redirect: yes please\n"
                     "  min_tls: TLS1_1\nclient_ip:\n  trusted_proxies: [10.0.0.0/33]\n")
    text = "\n".join(errs)
    assert "f.yaml:3:16: ip_truncation.ipv4_prefix: 40 is out of range — use a value from 0 to 32" in text
    assert "f.yaml:5:13: https.redirect: expected true or false" in text
    assert "f.yaml:6:12: https.min_tls: `TLS1_1` is not allowed — did you mean `TLS1_3` or `TLS1_2`?" in text
    assert "f.yaml:8:21:" in text and "10.0.0.0/33" in text


def test_yaml_syntax_error_has_position():
    errs = errors_of("version: 1\nrules: [\n  - x\n")
    assert errs[0].startswith("f.yaml:") and "invalid YAML" in errs[0]


def test_rule_needs_fields_and_unique_ids():
    errs = errors_of("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x]}\n"
                     "  - {id: a, action: nuke, scopes: [everywhere], names: []}\n  - {controls: [C99]}\n")
    text = "\n".join(errs)
    assert "duplicate rule id `a`" in text
    assert "`nuke` is not allowed" in text and "`everywhere` is not allowed" in text
    assert "a rule needs `names`" in text and "a rule needs an `id`" in text and "`C99` is not a control" in text


def test_sites_and_upstreams():
    p = policy.from_text("version: 1\nsites:\n  shop:\n    hosts: [shop.example, '*.shop.example']\n"
                         "    upstream: http://10.0.0.5:8080\n", "f.yaml", secret=b"s")
    assert p.sites.for_host("SHOP.example:443").name == "shop"
    assert p.sites.for_host("a.shop.example").upstream.url == "http://10.0.0.5:8080"
    assert p.sites.for_host("other.example").name == "default"
    errs = errors_of("version: 1\nsites:\n  shop:\n    hosts: [a]\n    upstream: ftp://x\n")
    assert "f.yaml:5:15:" in errs[0] and "scheme must be http or https" in errs[0]


def test_policy_is_immutable():
    p = policy.from_text("version: 1\n", "f.yaml", secret=b"s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.https = None  # type: ignore[misc]


def test_not_a_mapping():
    assert "must be a mapping" in errors_of("- a\n- b\n")[0]


def test_region_rules_apply_to_their_countries_and_to_unknown_visitors(policy_from_yaml):
    # C14: stricter handling for EU visitors; an unlocated visitor gets the strictest set (fail closed)
    p = policy_from_yaml("""
version: 1
rules:
  - {id: eu-strict, action: drop, scopes: [query], names: [utm_id], regions: [EU]}
  - {id: jp-only, action: redact, scopes: [query], names: [area], regions: [JP]}
  - {id: all, action: drop, scopes: [query], names: [gclid]}
""")
    url = "/p?utm_id=1&area=tokyo&gclid=2&q=x"
    assert p.scrubber_for("DE").url(url, "path", []) == "/p?area=tokyo&q=x"
    assert p.scrubber_for("JP").url(url, "path", []) == "/p?utm_id=1&area=[redacted]&q=x"
    assert p.scrubber_for("US").url(url, "path", []) == "/p?utm_id=1&area=tokyo&q=x"
    assert p.scrubber_for("").url(url, "path", []) == "/p?area=[redacted]&q=x"
    assert p.scrubber_for("DE") is p.scrubber_for("DE")


def test_region_codes_are_validated(policy_from_yaml):
    import pytest

    from privproxy.errors import ConfigErrors

    with pytest.raises(ConfigErrors, match="`Europe` is not a region"):
        policy_from_yaml("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x], "
                         "regions: [Europe]}\n")
