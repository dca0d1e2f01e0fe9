"""`privproxy check` as an operator meets it: an empty or version-less file fails with FILE:LINE and what to
do; a valid file's summary names what it inherits from the shipped file and what it switches off (issue 17)."""

from __future__ import annotations

import pytest

from privproxy.cli import main


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("text, error", [
    ("", "f.yaml:1:1: the file is empty (or holds only comments)"),
    ("# everything commented out\n#version: 1\n", "f.yaml:1:1: the file is empty (or holds only comments)"),
    ("rules: []\n", "f.yaml:1:1: `version` is missing — add `version: 1` as the first line"),
    ("version: 1\nhttps: {redirect: false}\n", "f.yaml:2:19: https.redirect: `false` stops redirecting"),
])
def test_check_refuses_with_position_and_fix(tmp_path, capsys, text, error):
    (tmp_path / "f.yaml").write_text(text)
    assert main(["check", "f.yaml"]) == 1
    out = capsys.readouterr()
    assert error in out.err and " — " in out.err and not out.out
    assert "error(s) in the configuration; nothing was changed" in out.err


def test_check_summary_names_the_baseline_and_what_is_switched_off(tmp_path, capsys):
    (tmp_path / "f.yaml").write_text("version: 1\ndisable: [click-ids, hsts, vendor:adobe]\n"
                                     "https:\n  hsts: {max_age: 0}\n"
                                     "beacons:\n  vendors: [ga4, universal_analytics, matomo, snowplow, segment, "
                                     "mixpanel, amplitude, posthog, meta_pixel, plausible]\n"
                                     "rules:\n  - {id: visitor-ids, action: drop, scopes: [query], "
                                     "names: [uid, user_id, userid, customer_id, customerid, member_id, memberid, "
                                     "visitor_id, client_id, cid, device_id, deviceid, anonymous_id, anonymousid, "
                                     "distinct_id]}\n")
    assert main(["check", "f.yaml"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].startswith("f.yaml: OK: 6 rules")
    assert ("  shipped rules in force that the file does not mention: contact-params, personal-names, secrets, "
            "tracking-cookies, device-detail") in lines
    assert ("  shipped sensitive paths in force that the file does not mention: health, medical, recruiting, "
            "careers-apply, inquiry") in lines
    assert any(x.startswith("  sections left out, shipped settings in force: ip_truncation, client_ip,") for x in lines)
    assert "  protections switched off by disable: (3):" in lines
    assert any(x.startswith("    click-ids: rule `click-ids`") for x in lines)
    assert any(x.startswith("    hsts: HSTS") for x in lines) and any(x.startswith("    vendor:adobe:") for x in lines)
    assert "shipped protections switched off by `disable:`: click-ids, hsts, vendor:adobe" in out.err


def test_check_of_the_shipped_rules_switches_nothing_off(capsys):
    assert main(["check"]) == 0  # no ./filters.yaml here: the built-in rules
    out = capsys.readouterr().out
    assert "protections switched off by disable: none" in out
    assert "shipped rules in force that the file does not mention: none" in out
