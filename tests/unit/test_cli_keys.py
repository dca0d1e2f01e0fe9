"""`privproxy keys` as an operator meets it, and what `check` and `report` say about keys in each mode (issue 17)."""

from __future__ import annotations

import errno
import json
import os
import stat
import time

import pytest

from privproxy import policy, pseudonyms
from privproxy.cli import keys as keys_cli
from privproxy.cli import main
from privproxy.pseudonyms import KeyFile, advance, fingerprint, read_key_file, write_key_file

DAY = 86400
T0 = DAY * 20400 + 3600  # an hour into a day
TODAY = f"daily:{T0 // DAY}"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./filters.yaml unless a test writes one
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", "cli-keys-consent-key-0123456789abcdef")
    return tmp_path


@pytest.fixture
def clock(here, monkeypatch):
    """A fake clock for `privproxy keys`; `check` and `report` below run on the real one."""
    c = Clock(T0)
    monkeypatch.setattr(keys_cli, "clock", c)
    return c


def test_init_writes_a_0600_key_for_the_current_period_and_refuses_to_overwrite(clock, tmp_path, capsys):
    assert main(["keys", "init", "--file", "key.json"]) == 0
    out = capsys.readouterr().out
    got = read_key_file(tmp_path / "key.json")
    assert got.period == TODAY and len(got.key) == 32 and fingerprint(got.key) in out and got.key.hex() not in out
    assert stat.S_IMODE(os.stat(tmp_path / "key.json").st_mode) == 0o600 and "keys rotate" in out
    assert main(["keys", "init", "--file", "key.json"]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and "keys rotate" in err
    assert read_key_file(tmp_path / "key.json") == got  # untouched
    assert main(["keys", "init", "--file", "key.json", "--force"]) == 0
    assert read_key_file(tmp_path / "key.json").key != got.key


def test_rotate_advances_one_way_and_is_idempotent_within_a_period(clock, tmp_path, capsys):
    path = tmp_path / "key.json"
    old = os.urandom(32)
    write_key_file(path, KeyFile(TODAY, old))
    assert main(["keys", "rotate", "--file", str(path)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    before = path.read_bytes(), os.stat(path).st_mtime_ns
    assert main(["keys", "rotate", "--file", str(path)]) == 0
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before  # not even rewritten

    clock.t += 3 * DAY
    assert main(["keys", "rotate", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    doc = json.loads(path.read_text())
    n, key = advance(old, TODAY, "daily", T0 // DAY + 3)
    assert doc["period"] == f"daily:{n}" and doc["key"] == key.hex() and set(doc) == {
        "privproxy_key_file", "period", "key", "written"}
    assert old.hex() not in path.read_text()  # only the new period's key is left in the file
    assert f"advanced from {TODAY} to daily:{n}" in out and key.hex() not in out
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.listdir(tmp_path) == ["key.json"]
    assert main(["keys", "rotate", "--file", str(path)]) == 0 and "nothing to do" in capsys.readouterr().out


def test_rotate_to_another_file_for_read_only_mounts(clock, tmp_path, capsys, monkeypatch):
    src = tmp_path / "secret" / "key.json"
    src.parent.mkdir()
    write_key_file(src, KeyFile(TODAY, bytes(32)))
    clock.t += DAY
    assert main(["keys", "rotate", "--file", str(src), "--output", str(tmp_path / "new.json")]) == 0
    assert read_key_file(src).period == TODAY  # the mounted file is left to the kubelet
    assert read_key_file(tmp_path / "new.json").period == f"daily:{T0 // DAY + 1}"
    capsys.readouterr()

    def read_only(path, state):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(keys_cli, "write_key_file", read_only)
    assert main(["keys", "rotate", "--file", str(src)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {src}: Read-only file system" in err and "--output" in err and "Secret" in err


@pytest.mark.parametrize("argv, message", [
    (["keys", "rotate", "--file", "missing.json"], "keys init --file missing.json"),
    (["keys", "show", "--file", "missing.json"], "no such key file"),
    (["keys", "rotate"], "pass --file FILE, or set pseudonymization.key_file"),
    (["keys", "init", "--file", "no/such/dir/key.json"], "cannot write no/such/dir/key.json"),
])
def test_errors_say_what_to_do(clock, capsys, argv, message):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_a_broken_file_is_named_with_its_line(clock, tmp_path, capsys):
    (tmp_path / "key.json").write_text('{"privproxy_key_file": 1,\n "period": "daily:1x"}')
    assert main(["keys", "rotate", "--file", "key.json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("key.json:2:2: `period`") and "keys init --force --file key.json" in err


def test_show_names_period_fingerprint_and_age_never_the_key(clock, tmp_path, capsys):
    key = os.urandom(32)
    write_key_file(tmp_path / "key.json", KeyFile(TODAY, key, pseudonyms.utc(T0 - 600)))
    assert main(["keys", "show", "--file", "key.json"]) == 0
    out = capsys.readouterr().out
    assert f"period:      {TODAY}" in out and "the current one" in out and fingerprint(key) in out
    assert "10 min ago" in out and "mode:        0600\n" in out and key.hex() not in out
    clock.t += 2 * DAY
    os.chmod(tmp_path / "key.json", 0o644)
    assert main(["keys", "show", "--file", "key.json"]) == 0
    out = capsys.readouterr().out
    assert "2 period(s) behind" in out and "keys rotate --file key.json" in out and "chmod 600" in out


def test_config_gives_the_file_and_the_rotation(clock, tmp_path, capsys):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "filters.yaml").write_text("version: 1\npseudonymization: {key_file: keys/p.json, rotation: hourly}\n")
    (conf / "keys").mkdir()
    assert main(["keys", "init", "--config", str(conf / "filters.yaml")]) == 0
    assert read_key_file(conf / "keys" / "p.json").period == f"hourly:{T0 // 3600}"
    # a daily file under an hourly config: rotate converts it to the config's rotation, one way
    write_key_file(conf / "keys" / "p.json", KeyFile(TODAY, bytes(32)))
    assert main(["keys", "show", "--config", str(conf / "filters.yaml")]) == 0
    assert "rotates hourly" in capsys.readouterr().out
    assert main(["keys", "rotate", "--config", str(conf / "filters.yaml")]) == 0
    got = read_key_file(conf / "keys" / "p.json")
    assert (int(got.period.split(":")[1]), got.key) == advance(bytes(32), TODAY, "hourly", T0 // 3600)
    # instances started on the converted file and on the original agree
    inst = pseudonyms.Pseudonymizer(pseudonyms.Settings(rotation="hourly", key_file=str(conf / "keys" / "p.json")),
                                    clock=clock)
    assert inst.key() == got.key


def test_check_and_report_say_what_a_fixed_secret_allows(here, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", "fixed-secret-0123456789abcdef0123456789")
    (tmp_path / "filters.yaml").write_text("version: 1\n")
    assert main(["check", "filters.yaml"]) == 0
    err = capsys.readouterr().err
    assert "warning: filters.yaml: pseudonymization keys come from a fixed secret (PRIVPROXY_SECRET): whoever " \
           "holds it can recompute the pseudonyms of every past period" in err and "key_file" in err
    assert main(["report", "--config", "filters.yaml"]) == 0
    out = capsys.readouterr().out
    assert "whoever holds that secret can recompute the pseudonyms of any past period" in out
    assert "can no longer be recomputed" not in out and "past keys can be recomputed" in out

    monkeypatch.delenv("PRIVPROXY_SECRET")
    assert main(["check", "filters.yaml"]) == 0
    err = capsys.readouterr().err
    assert "PRIVPROXY_SECRET is not set" in err and "can recompute every past pseudonym" in err


def test_with_a_key_file_check_and_report_say_keys_are_forgotten(here, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", "ignored-when-a-key-file-is-set-0123456789")
    (tmp_path / "filters.yaml").write_text("version: 1\npseudonymization: {key_file: key.json}\n")
    assert main(["check", "filters.yaml"]) == 0
    err = capsys.readouterr().err
    assert "no such key file" in err and "keys init --file" in err and "random key" in err
    p = policy.load(tmp_path / "filters.yaml")
    assert any("key file" in m for m in policy.missing_secrets(p))  # --require-secrets refuses to start

    assert main(["keys", "init"]) == 0  # the file named by ./filters.yaml
    capsys.readouterr()
    assert main(["check", "filters.yaml"]) == 0
    assert "recompute" not in capsys.readouterr().err
    p = policy.load(tmp_path / "filters.yaml")
    assert policy.missing_secrets(p) == [] and p.scrubber.pseudonymizer.mode == "key_file"
    assert p.pseudonyms.key_file == str(tmp_path / "key.json")
    assert main(["report", "--config", "filters.yaml"]) == 0
    out = capsys.readouterr().out
    assert "a past period's pseudonyms can no longer be recomputed" in out and "fixed secret" not in out
    assert "one-way ratchet: past keys erased" in out


def test_check_warns_when_the_file_is_not_rotated(here, tmp_path, capsys):
    (tmp_path / "filters.yaml").write_text("version: 1\npseudonymization: {key_file: key.json}\n")
    write_key_file(tmp_path / "key.json", KeyFile(pseudonyms.period_id(time.time() - 3 * DAY, "daily"), bytes(32)))
    assert main(["check", "filters.yaml"]) == 0
    err = capsys.readouterr().err
    assert "3 period(s) behind" in err and f"keys rotate --file {tmp_path / 'key.json'}" in err
