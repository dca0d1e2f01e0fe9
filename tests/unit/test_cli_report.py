"""`privproxy report` through its command line: Markdown and HTML, English and Japanese, the company's own
disclosure and controls file, configuration errors by file and line (issue 21 item 7; C7: 001 §6)."""

from __future__ import annotations

import subprocess

from tests.helpers import privproxy_exe
from tests.unit.test_report import SHIPPED


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


def test_cli_renders_japanese_with_its_own_disclosure(tmp_path):
    controls = tmp_path / "my-controls.yaml"
    controls.write_text("documents:\n  P: 当社プライバシーポリシー\ncontrols:\n  C2:\n    promise:\n"
                        "      ja: アクセスログは統計にのみ利用します。\n      en: Access logs serve statistics only.\n"
                        "    clauses: [P 第5条]\n", encoding="utf-8")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(SHIPPED + "\ndisclosure:\n  controller: 株式会社テスト\n  contact: privacy@test.example\n"
                   "  effective_date: '2027-04-01'\n  controls_file: my-controls.yaml\n", encoding="utf-8")
    r = subprocess.run(privproxy_exe() + ["report", "--config", str(cfg), "--lang", "ja"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "株式会社テスト（以下「当社」といいます）" in r.stdout and "2027年4月1日から適用します" in r.stdout
    assert "| C2 | アクセスログは統計にのみ利用します。 | P 第5条 |" in r.stdout
    assert "P：当社プライバシーポリシー" in r.stdout
    controls.write_text("controls:\n  C2:\n    promise: {ja: x}\n  C99:\n    promise: {ja: y}\n", encoding="utf-8")
    r = subprocess.run(privproxy_exe() + ["report", "--config", str(cfg), "--lang", "ja"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and f"{controls}:4" in r.stderr and "C99" in r.stderr and not r.stdout
    r = subprocess.run(privproxy_exe() + ["report", "--config", str(cfg), "--lang", "fr"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr
