"""The disclosure report follows the rules in force: change a rule and the published notice changes
(C7: 001 §6, 003 anonymously processed information)."""

from __future__ import annotations

import datetime
import re
from html.parser import HTMLParser

import pytest

from privproxy import policy, protections, report, vendors
from tests.helpers import REPO

SHIPPED = (REPO / "filters.yaml").read_text()
WHEN = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)


CONTROLS_FILE = REPO / "docs" / "controls.yaml"
DISCLOSURE = f"""
disclosure:
  controller: Sample Watch Co., Ltd.
  representative: Taro Yamada
  address: 1-2-3 Nishi-Tokyo, Tokyo
  contact: privacy@sample.example
  effective_date: 2026-12-01
  purposes: [running and securing the website, statistics of its use]
  controls_file: {CONTROLS_FILE}
  ja:
    controller: 株式会社サンプル時計
    representative: 代表取締役 山田太郎
    contact: 個人情報お問い合わせ窓口（privacy@sample.example）
    purposes: [ウェブサイトの運営と安全管理, ウェブサイトの利用状況の統計]
"""


def md(text: str = SHIPPED, lang: str = "en") -> str:
    return report.markdown(report.build(policy.from_text(text, "filters.yaml"), "0.1.0", WHEN, lang))


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
    # the clauses come from the company's controls file, not from code
    assert "001 §9.2.1" not in controls and "disclosure.controls_file" in controls
    assert "001 §9.2.1" in row(section(md(SHIPPED + DISCLOSURE), "Controls and the rules that enforce them"), "C2")
    assert "sha256 `" + policy.from_text(SHIPPED, "filters.yaml").sha256[:16] in text
    assert text.count("Warning") == 1 and "no `disclosure:` section" in text
    assert "Warning" not in md(SHIPPED + DISCLOSURE)


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
    assert '<html lang="en">' in page
    assert "How this website processes access information" in "".join(p.text)




def test_the_disclosure_section_names_who_publishes_the_notice():
    text = md(SHIPPED + DISCLOSURE)
    who = section(text, "Who is responsible")
    assert row(who, "Controller").endswith("| Sample Watch Co., Ltd. |")
    assert row(who, "Contact for questions and requests").endswith("| privacy@sample.example |")
    assert row(who, "Effective from").endswith("| 1 December 2026 |") and "1-2-3 Nishi-Tokyo" in who
    assert "running and securing the website" in who
    assert "how Sample Watch Co., Ltd. (\"we\") processes" in text and "It applies from 2026-12-01." in text
    # the promises and documents are the controls file's
    controls = section(text, "Controls and the rules that enforce them")
    assert "001: Citizen Watch Co., Ltd., Handling of Personal Information" in controls
    assert "000 §7; 001 §7.2" in row(controls, "C1")


def test_claims_stay_true_pseudonyms_are_personal_data_and_time_is_as_configured():
    # 001 §6 / 003: what is published must be what happens
    for text in (md(), md(SHIPPED + DISCLOSURE)):
        assert "cannot identify" not in text.lower() and "are anonymous" not in text
        log = section(text, "Access logs")
        assert "pseudonymized, not anonymous" in log and "personal data under the GDPR" in log
        assert "Art. 4(5)" in log and "pseudonymously processed information" in log
    json_format = "\nlogging:\n  format: json "
    assert json_format in SHIPPED
    assert row(section(md(), "Access logs"), "Time of the request").endswith("| kept to the millisecond (UTC) | C3 |")
    combined = md(SHIPPED.replace(json_format, "\nlogging:\n  format: vhost_combined "))
    assert "| kept to the second (UTC) |" in row(section(combined, "Access logs"), "Time of the request")
    both = md(SHIPPED.replace(json_format, "\nlogging:\n  format: both "))
    assert "to the millisecond (UTC) in the JSON log and to the second" in both
    assert "keep the hour" not in md()
    ja = md(SHIPPED.replace(json_format, "\nlogging:\n  format: combined "), "ja")
    assert "| アクセス日時 | 協定世界時（UTC）で秒単位まで保存 | C3 |" in ja


def test_japanese_notice_is_written_for_japanese_readers():
    text = md(SHIPPED + DISCLOSURE, "ja")
    assert text.startswith("# 本ウェブサイトにおけるアクセス情報の取扱いについて\n")
    assert "株式会社サンプル時計（以下「当社」といいます）は、" in text
    assert "本書は 2026年12月1日から適用します。" in text
    who = section(text, "取扱いの責任者")
    assert row(who, "事業者の名称").endswith("| 株式会社サンプル時計 |")
    assert row(who, "代表者").endswith("| 代表取締役 山田太郎 |")
    assert row(who, "適用開始日").endswith("| 2026年12月1日 |")
    assert "ウェブサイトの運営と安全管理、ウェブサイトの利用状況の統計" in who
    log = section(text, "アクセスログ")
    assert "匿名化したものではありません" in log and "仮名加工情報" in log
    assert "個人データに当たります（第4条第5号" in log
    assert "先頭の 24 ビット（IPv4）" in row(log, "IP アドレス") and "30日を経過した後に削除します" in log
    assert row(log, "Cookie").endswith("| 記録しません | C4 |")
    assert "当社は" in text and "ます。" in text  # 敬体
    controls = section(text, "管理策と、それを実施する設定・ルール")
    assert "通信を暗号化します。" in row(controls, "C1") and "000 §7; 001 §7.2" in row(controls, "C1")
    # no English sentence left in the prose (rule ids, names and settings aside)
    prose = [line for line in text.splitlines() if line and not line.startswith(("|", "#"))]
    for line in prose:
        assert not re.search(r"\b(?:the|is|are|and|of)\b", line.replace("`", " ")), line
    assert "注意" not in text
    assert "> **注意：** 設定に `disclosure:` の節がないため" in md(SHIPPED, "ja")
    page = report.html(report.build(policy.from_text(SHIPPED + DISCLOSURE, "filters.yaml"), "0.1.0", WHEN, "ja"))
    assert '<html lang="ja">' in page and "<h2>アクセスログ（C2、C3、C8、C9、C10、C11）</h2>" in page


def test_no_company_is_written_into_the_code():
    source = (REPO / "addons" / "privproxy" / "report.py").read_text()
    for name in ("Citizen", "CASIO", "actio Inc", "001 §", "000 §"):
        assert name not in source, name
    assert not (REPO / "addons" / "privproxy" / "controls.py").exists()




def test_every_shipped_protection_is_described_in_japanese():
    for pid in protections.IDS:
        assert report._protection_ja(pid) != protections.IDS[pid], (
            f"{pid}: add its Japanese description to report.PROTECTIONS_JA")
    no_click_ids = re.sub(r"  - id: click-ids\n.*?\n\n", "", SHIPPED, count=1, flags=re.S)
    text = md(disabling(no_click_ids, "click-ids"), "ja")
    assert row(section(text, "無効にしている保護機能"), "`click-ids`").endswith(
        "| ルール `click-ids`：広告クリック ID（gclid、fbclid など）を URL と Cookie から削除 |")
    assert "> **注意：** privproxy が標準で備える保護機能のうち 1 件を" in text
