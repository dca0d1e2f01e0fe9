"""filters.yaml `disclosure:` and the controls file it names (issue 21 item 7; C7: 001 §6)."""

from __future__ import annotations

import dataclasses

import pytest

from privproxy import disclosure, policy, schema
from privproxy.errors import PrivproxyError
from tests.helpers import REPO


def load(tmp_path, text: str, controls: str | None = None) -> policy.Policy:
    if controls is not None:
        (tmp_path / "controls.yaml").write_text(controls, encoding="utf-8")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text("version: 1\n" + text, encoding="utf-8")
    return policy.load(cfg)


def errors(tmp_path, text: str, controls: str | None = None) -> str:
    with pytest.raises(PrivproxyError) as e:
        load(tmp_path, text, controls)
    return str(e.value)


def test_a_full_section_is_parsed_once_into_frozen_settings(tmp_path):
    p = load(tmp_path, """disclosure:
  controller: Sample K.K.
  contact: privacy@sample.example
  effective_date: 2026-12-01
  purposes: [statistics]
  controls_file: controls.yaml
  ja:
    controller: 株式会社サンプル
    purposes: [統計]
""", "documents:\n  P: {en: Policy, ja: 方針}\ncontrols:\n  C2:\n    promise: {en: Logs, ja: ログ}\n"
     "    clauses: [P 1]\n  C1:\n    promise: Encrypted\n")
    d = p.disclosure
    assert d.configured and d.effective_date == "2026-12-01" and d.purposes == ("statistics",)
    assert d.text("controller", "ja") == "株式会社サンプル" and d.text("controller", "en") == "Sample K.K."
    assert d.text("contact", "ja") == "privacy@sample.example" and d.text("purposes", "ja") == ("統計",)
    assert [c.id for c in d.controls.controls] == ["C1", "C2"]  # in id order
    assert d.controls.get("C2").text("ja") == "ログ" and d.controls.get("C2").clauses == ("P 1",)
    assert d.controls.get("C1").text("ja") == "Encrypted"  # one string: every language
    assert d.controls.documents_in("ja") == (("P", "方針"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.controller = "x"  # type: ignore[misc]


def test_no_section_means_nothing_is_stated_and_nothing_is_inherited(tmp_path):
    assert load(tmp_path, "").disclosure == disclosure.DEFAULT
    assert not disclosure.DEFAULT.configured
    assert "disclosure" not in policy.INHERITED_SECTIONS  # a company's name never comes from the shipped file


def test_errors_name_the_file_line_and_what_to_do(tmp_path):
    cfg = tmp_path / "filters.yaml"
    got = errors(tmp_path, "disclosure:\n  controler: X\n  effective_date: '2026-13-01'\n")
    assert f"{cfg}:3:3: unknown key `disclosure.controler`" in got and "did you mean `controller`" in got
    assert f"{cfg}:3:3: disclosure: the controller is missing" in got and "contact is missing" in got
    assert f"{cfg}:4:19: disclosure.effective_date: `2026-13-01` is not a date" in got and "YYYY-MM-DD" in got
    got = errors(tmp_path, "disclosure:\n  controller: X\n  contact: y\n  controls_file: nowhere.yaml\n")
    assert f"{cfg}:5:18: disclosure.controls_file: cannot read" in got and "docs/controls.yaml" in got
    controls = tmp_path / "controls.yaml"
    got = errors(tmp_path, "disclosure:\n  controller: X\n  contact: y\n  controls_file: controls.yaml\n",
                 "documents:\n  P: Policy\ncontrols:\n  C2:\n    promise: {en: a, fr: b}\n    clauses: [Q 1]\n"
                 "  C16: {promise: c}\n  C3: {clauses: [P 2]}\n")
    assert f"{controls}:5:" in got and "`fr` is not a language" in got
    assert f"{controls}:6:" in got and "cites the document `Q`" in got
    assert f"{controls}:7:3: controls.C16: `C16` is not a control" in got
    assert f"{controls}:8:" in got and "no promise" in got
    got = errors(tmp_path, "disclosure:\n  controller: X\n  contact: y\n  controls_file: controls.yaml\n",
                 "controls: [\n")
    assert f"{controls}:" in got and "invalid YAML" in got


def test_the_shipped_example_maps_every_control_and_is_in_the_schema():
    controls = disclosure.load_controls(str(REPO / "docs" / "controls.yaml"), None)  # type: ignore[arg-type]
    assert [c.id for c in controls.controls] == [f"C{i}" for i in range(1, 16)]
    for c in controls.controls:
        assert dict(c.promise).keys() == {"en", "ja"} and c.clauses, c.id
        assert "cannot identify" not in c.text("en")  # pseudonymized logs are personal data (GDPR Art. 4(5))
    assert {d for d, _ in controls.documents} == {"000", "001", "002", "003", "004"}
    assert schema.node("disclosure").keys() >= {"controller", "contact", "effective_date", "controls_file", "ja"}
    assert schema.node("disclosure.effective_date").pattern
