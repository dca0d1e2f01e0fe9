"""`privproxy consent` and `privproxy dsr` as a user meets them: clear errors, right exit codes."""

from __future__ import annotations

import json

import pytest

from privproxy.cli import main

KEY = "cli-consent-key-0123456789abcdef0123"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./filters.yaml: the built-in defaults
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", KEY)


def test_mint_then_verify(capsys):
    assert main(["consent", "mint", "--member", "m-1", "--ttl", "2h", "--scope", "logs"]) == 0
    cookie = capsys.readouterr().out.strip()
    assert cookie.startswith("privproxy_consent=v1.k1.")
    assert main(["consent", "verify", cookie]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid: member m-1, scopes logs, key k1")
    assert main(["consent", "verify", "--json", cookie.split("=", 1)[1]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] and doc["scopes"] == ["logs"] and doc["member"] == "m-1"


def test_verify_says_why_not(capsys, monkeypatch):
    assert main(["consent", "mint", "--member", "m-1", "--value-only"]) == 0
    value = capsys.readouterr().out.strip()
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", "another-key-of-sufficient-length-0123456789")
    assert main(["consent", "verify", value]) == 1
    assert capsys.readouterr().out.startswith("not valid (forged)")
    assert main(["consent", "verify", "nonsense"]) == 1
    assert "malformed" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--ttl", "1y"], "--ttl"),
    (["--ttl", "500d"], "max_ttl_days"),
    (["--key-id", "k9"], "--key-id k9"),
    (["--member", "has space"], "member ids"),
])
def test_mint_errors_say_what_to_do(capsys, args, message):
    argv = ["consent", "mint", "--member", "m-1", *args] if "--member" not in args else ["consent", "mint", *args]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_mint_without_a_key_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("PRIVPROXY_CONSENT_KEY")
    assert main(["consent", "mint", "--member", "m-1"]) == 1
    err = capsys.readouterr().err
    assert "PRIVPROXY_CONSENT_KEY" in err and "openssl rand -hex 32" in err


def test_revoke_needs_a_revocation_file_then_refuses_the_members_tokens(capsys, tmp_path):
    assert main(["consent", "revoke", "--member", "m-1"]) == 1
    assert "revocation_file" in capsys.readouterr().err
    (tmp_path / "filters.yaml").write_text("version: 1\nconsent: {revocation_file: revoked.txt}\n")
    assert main(["consent", "mint", "--member", "m-1"]) == 0
    cookie = capsys.readouterr().out.strip()
    assert main(["consent", "revoke", "--member", "m-1"]) == 0
    assert (tmp_path / "revoked.txt").read_text().startswith("m-1 ")
    capsys.readouterr()
    assert main(["consent", "verify", cookie]) == 1
    assert "revoked" in capsys.readouterr().out


def test_dsr_errors(capsys, tmp_path):
    assert main(["dsr", "export", "--member", "m-1", "--log-dir", str(tmp_path / "nope")]) == 1
    assert "--log-dir" in capsys.readouterr().err
    assert main(["dsr", "erase", "--member", "bad id", "--log-dir", str(tmp_path)]) == 1
    assert "member ids" in capsys.readouterr().err


def test_dsr_export_to_a_file(capsys, tmp_path):
    (tmp_path / "linked.jsonl").write_text('{"member":"m-1","ts":"2026-11-22T00:00:00.000Z","path":"/a"}\n')
    assert main(["dsr", "export", "--member", "m-1", "--log-dir", str(tmp_path), "-o", str(tmp_path / "x.json")]) == 0
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["records"] == [{"member": "m-1", "ts": "2026-11-22T00:00:00.000Z", "path": "/a"}]
