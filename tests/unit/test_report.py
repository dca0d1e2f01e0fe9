"""The disclosure report follows the rules in force: change a rule and the published notice changes
(C7: 001 §6, 003 anonymously processed information)."""

from __future__ import annotations

import datetime
import re
import subprocess
from html.parser import HTMLParser

import pytest

from privproxy import policy, protections, report, vendors
from tests.helpers import REPO, privproxy_exe

SHIPPED = (REPO / "filters.yaml").read_text()
WHEN = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)


def md(text: str = SHIPPED) -> str:
    return report.markdown(report.build(policy.from_text(text, "filters.yaml"), "0.1.0", WHEN))


def disabling(text: str, *ids: str) -> str:
    """The file with `disable: [ids]` after its version line: weakening a shipped protection takes that."""
    return text.replace("version: 1\n", f"version: 1\ndisable: [{', '.join(ids)}]\n", 1) if ids else text


def section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", text, re.S | re.M)
    assert m, title
    return m.group(0)


def row(text: str, first_cell: str) -> str:
    m = re.search(rf"^\| {re.escape(first_cell)} \|.*$", text, re.M)
    assert m, first_cell
    return m.group(0)


def test_shipped_rules_report_every_record_kind_retention_and_control():
    # 001 §6: the items kept and how each is processed are published
    text = md()
    log = section(text, "Access logs")
    assert "first 24 bits (IPv4) or 48 bits (IPv6)" in row(log, "Client IP address")
    assert "`click-ids` (removed)" in row(log, "Page address (path and query)")
    assert "`visitor-ids` (pseudonymized)" in row(log, "Page address (path and query)")
    assert "`/health/**` as `/health/*`" in log
    assert "deleted after 30 days" in log
    beacons = section(text, "Analytics")
    assert "Google Analytics 4" in beacons and "Plausible" in beacons
    assert row(beacons, "Visitor (client) ids").endswith("| pseudonymized |")
    assert row(beacons, "E-mail addresses, phone numbers, names and postal addresses (clear or hashed)").endswith(
        "| removed |")
    members = section(text, "Members who consented")
    assert "at most 400 days" in members and "deleted after 90 days" in members and "Sec-GPC" in members
    assert "every day" in section(text, "How each kind of processing works")
    controls = section(text, "Controls and the rules that enforce them")
    for cid in [f"C{i}" for i in range(1, 16)]:
        assert re.search(rf"^\| {cid} \|", controls, re.M), cid
    assert "`visitor-ids`" in row(controls, "C2") and "`health`" in row(controls, "C10")
    assert "001 §9.2.1" in row(controls, "C2")
    assert "sha256 `" + policy.from_text(SHIPPED, "filters.yaml").sha256[:16] in text
    assert "Warning" not in text


@pytest.mark.parametrize("old, new, where, before, after, disable", [
    ("ipv4_prefix: 24", "ipv4_prefix: 16", ("Access logs", "Client IP address"), "first 24 bits", "first 16 bits",
     ()),
    ("  retention_days: 30", "  retention_days: 7", ("Access logs", None), "deleted after 30 days",
     "deleted after 7 days", ()),
    ("    retention_days: 90 ", "    retention_days: 3650 ", ("Members who consented", None),
     "deleted after 90 days", "deleted after 3650 days", ()),
    ("    client_id: hash", "    client_id: drop", ("Analytics", "Visitor (client) ids"), "pseudonymized", "removed",
     ()),
    ("  rotation: daily", "  rotation: hourly", ("How each kind of processing works", None), "every day",
     "every hour", ()),
    ("    action: hash\n    scopes: [query]", "    action: drop\n    scopes: [query]",
     ("Access logs", "Page address (path and query)"), "`visitor-ids` (pseudonymized)", "`visitor-ids` (removed)",
     ()),
    # dropping a shipped protection takes `disable:`, and the report's first section then names it
    ("  - id: medical\n    pattern: /medical/**\n    replace: /medical/*\n", "", ("Access logs", None),
     "`/medical/**`", None, ("medical",)),
    ("  honor_gpc: true", "  honor_gpc: false", ("Members who consented", None), "Sec-GPC", None, ("signal:gpc",)),
])
def test_a_rule_change_changes_the_report(old, new, where, before, after, disable):
    assert old in SHIPPED, old
    changed = md(disabling(SHIPPED.replace(old, new, 1), *disable))
    for pid in disable:
        assert f"| `{pid}` |" in section(changed, "Protections switched off")
    original = section(md(), where[0])
    updated = section(changed, where[0])
    if where[1]:
        original, updated = row(original, where[1]), row(updated, where[1])
    assert before in original and before not in updated
    if after:
        assert after in updated


def test_report_only_consent_off_vendors_off_and_region_rules_are_disclosed():
    text = md(disabling(SHIPPED.replace("report_only: false", "report_only: true"), "report-only"))
    assert "> **Warning:** The rules are in report-only mode" in text
    assert "\nconsent:\n  cookie:" in SHIPPED
    off = md(SHIPPED.replace("\nconsent:\n  cookie:", "\nconsent:\n  enabled: false\n  cookie:"))
    assert "No visitor is linked to their identity" in section(off, "Members who consented")
    assert "consent switched off" in row(section(off, "Controls and the rules that enforce them"), "C5")
    one = md(disabling(re.sub(r"  vendors: \[[^\]]*\]", "  vendors: [matomo]", SHIPPED, flags=re.S),
                       *(f"vendor:{v}" for v in vendors.VENDORS if v != "matomo")))
    assert "with Matomo." in section(one, "Analytics") and "Google Analytics" not in section(one, "Analytics")
    eu = md(SHIPPED.replace("rules:\n", "rules:\n  - {id: eu-no-referrer, action: drop, scopes: [referrer], "
                                        "names: [q], regions: [EU], controls: [C14], why: transfers}\n", 1))
    regions = section(eu, "Visitors from different regions")
    assert "`eu-no-referrer`" in regions and "DE" in regions and "FR" in regions
    assert "`eu-no-referrer`" in row(section(eu, "Controls and the rules that enforce them"), "C14")


def test_disabled_protections_have_their_own_section_and_a_warning():
    shipped = md()
    assert "None: every protection privproxy ships is in force." in section(shipped, "Protections switched off")
    no_click_ids = re.sub(r"  - id: click-ids\n.*?\n\n", "", SHIPPED, count=1, flags=re.S)
    text = md(disabling(no_click_ids.replace("  secure_cookies: true", "  secure_cookies: false"), "secure-cookies",
                        "click-ids"))
    off = section(text, "Protections switched off")
    assert off.startswith("## Protections switched off") and text.index(off) < text.index("## Encrypted transport")
    assert row(off, "`click-ids`").endswith(f"| {protections.IDS['click-ids']} |")
    assert "`secure-cookies`" in off and "`visitor-ids`" not in off
    assert "> **Warning:** 2 of the protections privproxy ships are switched off" in text
    assert "`click-ids`" not in section(text, "Rules in force")  # removed, not merely listed
    assert row(section(text, "Encrypted transport"), "Cookies").endswith("| left as the site sets them |")


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_a_standalone_page_with_everything_escaped():
    hostile = SHIPPED.replace('why: "004: OS, browser and screen information are acquired only as far as needed"',
                              'why: "<script>alert(1)</script> & co"')
    page = report.html(report.build(policy.from_text(hostile, "filters.yaml"), "0.1.0", WHEN))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    p = Collect()
    p.feed(page)
    assert p.tags.count("table") == 6 and "h1" in p.tags and p.tags.count("h2") == 9
    assert "How this website processes access information" in "".join(p.text)


def test_cli_writes_md_and_html_and_names_config_errors(tmp_path):
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(SHIPPED.replace("ipv4_prefix: 24", "ipv4_prefix: 20"))
    r = subprocess.run(privproxy_exe() + ["report", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "first 20 bits" in r.stdout and r.stdout.startswith("# ")
    out = tmp_path / "notice.html"
    r = subprocess.run(privproxy_exe() + ["report", "--config", str(cfg), "--format", "html", "-o", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and out.read_text().startswith("<!doctype html>")
    cfg.write_text("version: 1\nip_truncation:\n  ipv4_prefx: 24\n")
    r = subprocess.run(privproxy_exe() + ["report", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and f"{cfg}:3" in r.stderr and "ipv4_prefx" in r.stderr and not r.stdout
