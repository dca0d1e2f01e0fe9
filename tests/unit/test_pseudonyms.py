"""Rotating keyed pseudonyms: same key -> same pseudonym; a new period or another destination -> unlinkable; past
keys cannot be derived from what an instance or the rotated key file holds (C2, C11; 004 disposal; issue 17)."""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import logging
import os
import stat

import pytest

from privproxy import pseudonyms
from privproxy.cli import keys as keys_cli
from privproxy.cli import main
from privproxy.errors import ConfigError
from privproxy.pseudonyms import (
    KeyFile,
    Pseudonymizer,
    Settings,
    advance,
    destination_key,
    fingerprint,
    ratchet,
    read_key_file,
    write_key_file,
)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_instances_with_the_same_secret_agree():
    clock = Clock(1_700_000_000)
    a = Pseudonymizer(Settings(), secret=b"shared", clock=clock)
    b = Pseudonymizer(Settings(), secret=b"shared", clock=clock)
    assert a.pseudonym("GA1.1.123.456", "_ga") == b.pseudonym("GA1.1.123.456", "_ga")
    assert a.pseudonym("x", "cid") != Pseudonymizer(Settings(), secret=b"other", clock=clock).pseudonym("x", "cid")


def test_rotation_changes_pseudonyms_and_forgets_the_old_key():
    clock = Clock(86400 * 20000 + 10)
    p = Pseudonymizer(Settings(rotation="daily"), secret=b"s", clock=clock)
    today = p.pseudonym("visitor-1")
    old_key = p.key()
    clock.t += 86400
    assert p.pseudonym("visitor-1") != today
    assert p.key() != old_key and p._key != old_key  # only the current period's key is held


def test_field_name_separates_pseudonyms():
    p = Pseudonymizer(Settings(), secret=b"s", clock=Clock(0))
    assert p.pseudonym("1", "uid") != p.pseudonym("1", "cid")


def test_ephemeral_without_secret(monkeypatch):
    monkeypatch.delenv("PRIVPROXY_SECRET", raising=False)
    assert Pseudonymizer(Settings()).ephemeral
    monkeypatch.setenv("PRIVPROXY_SECRET", "abc")
    p1, p2 = Pseudonymizer(Settings()), Pseudonymizer(Settings())
    assert not p1.ephemeral and p1.pseudonym("v") == p2.pseudonym("v")


def test_fast_base32_prefix_equals_rfc4648_base32():
    # the hot-path encoder must give exactly the characters base64.b32encode gives (pseudonyms never change)
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from privproxy.pseudonyms import b32_prefix

    @settings(max_examples=500, deadline=None)
    @given(st.binary(min_size=1, max_size=40), st.integers(min_value=1, max_value=70))
    def check(data, length):
        assert b32_prefix(data, length) == base64.b32encode(data).decode()[:length].lower()

    check()


def test_pseudonym_is_hmac_sha256_of_field_and_value_under_the_period_key():
    # The precomputed HMAC states must give exactly the textbook HMAC, in every period (pseudonyms never change
    # for an optimisation, and instances on other versions must still agree).
    clock = Clock(86400 * 20000 + 5)
    p = Pseudonymizer(Settings(), secret=b"s", clock=clock)
    for step in (0, 3600, 86400, 86400 * 7, -86400):
        clock.t += step
        key = hmac.new(b"s", f"privproxy/pseudonym/v1/{p.period()}".encode(), hashlib.sha256).digest()
        for value, field in (("GA1.1.123.456", "_ga"), ("", ""), ("ü" * 200, "uid")):
            mac = hmac.digest(key, f"{field}\x00{value}".encode(), "sha256")
            assert p.pseudonym(value, field) == "pp_" + base64.b32encode(mac).decode()[:16].lower()
        assert p.key() == key



def test_mac_is_hmac_sha256_under_the_period_key_in_every_period_and_destination():
    # Beacon ids are pseudonymized in their own shape from this MAC (scrub.Scrubber.shaped): the precomputed
    # states must give the textbook HMAC, also after the key changed and for a destination's own key.
    clock = Clock(86400 * 20000 + 5)
    p = Pseudonymizer(Settings(), secret=b"s", clock=clock)
    for step in (0, 3600, 86400, -86400):
        clock.t += step
        for who in (p, p.for_destination("ga4")):
            for message in (b"", b"beacon/client_id\x00918273645.1700000000", "ü".encode() * 100):
                assert who.mac(message) == hmac.digest(who.key(), message, "sha256")


def test_remembered_values_last_one_period_and_follow_the_key():
    # Beacon ids pseudonymized in their shape are remembered like pseudonyms: within the key's period only.
    clock = Clock(86400 * 20000 + 5)
    p = Pseudonymizer(Settings(), secret=b"s", clock=clock)
    made = []

    def make():
        made.append(p.key())
        return p.mac(b"x")

    first = p.remember(("shaped", "client_id", str, "123.456"), make)
    assert p.remember(("shaped", "client_id", str, "123.456"), make) == first and len(made) == 1
    assert p.remember(("shaped", "client_id", int, "123.456"), make) == first and len(made) == 2  # another key
    clock.t += 86400
    after = p.remember(("shaped", "client_id", str, "123.456"), make)
    assert len(made) == 3 and made[2] != made[0] and after == hmac.digest(made[2], b"x", "sha256") != first

# -- the key ratchet, the key file and destinations (issue 17, Deliver 7 and 8) ----------------------------

DAY = 86400
T0 = DAY * 20400 + 3600  # 2025-11-09 01:00 UTC: an hour into a day, past the rotation grace
K0 = bytes(range(32))


def key_file(tmp_path, period=f"daily:{T0 // DAY}", key=K0, name="key.json"):
    path = tmp_path / name
    write_key_file(path, KeyFile(period, key))
    return path


def from_file(path, clock, rotation="daily") -> Pseudonymizer:
    return Pseudonymizer(Settings(key_file=str(path), rotation=rotation), clock=clock)


def held_bytes(obj, seen=None) -> list[bytes]:
    """Every bytes value reachable from an object's attributes (what an instance still holds)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, (bytes, bytearray)):
        return [bytes(obj)]
    if isinstance(obj, dict):
        return [b for v in obj.values() for b in held_bytes(v, seen)]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [b for v in obj for b in held_bytes(v, seen)]
    if hasattr(obj, "__dict__") and not callable(obj):
        return [b for v in vars(obj).values() for b in held_bytes(v, seen)]
    return []


def test_each_key_is_the_hmac_of_the_one_before():
    assert ratchet(K0, "daily:5") == hmac.digest(K0, b"privproxy/ratchet/v1/daily:5", "sha256")
    n, k = advance(K0, "daily:3", "daily", 5)
    assert (n, k) == (5, ratchet(ratchet(K0, "daily:4"), "daily:5"))
    assert advance(k, "daily:5", "daily", 3) == (5, k)  # never backwards: there is no way to an older key


def test_key_file_instances_agree_and_other_files_do_not(tmp_path):
    clock = Clock(T0)
    path = key_file(tmp_path)
    a, b = from_file(path, clock), from_file(path, clock)
    assert not a.ephemeral and a.mode == "key_file"
    assert a.pseudonym("GA1.1.123.456", "_ga") == b.pseudonym("GA1.1.123.456", "_ga")
    other = from_file(key_file(tmp_path, key=bytes(32), name="other.json"), clock)
    assert other.pseudonym("GA1.1.123.456", "_ga") != a.pseudonym("GA1.1.123.456", "_ga")
    # the period key is the file's key (same rotation, current period): pseudonyms are HMAC-SHA256 under it
    assert a.key() == K0 and a.period() == f"daily:{T0 // DAY}"


def test_instances_ratchet_in_memory_then_agree_with_the_rotated_file(tmp_path, caplog, monkeypatch):
    clock = Clock(T0)
    path = key_file(tmp_path)
    p = from_file(path, clock)
    today = p.pseudonym("visitor-1")
    old_key = p.key()
    clock.t += 2 * DAY
    assert p.pseudonym("visitor-1") != today
    assert p.key() == advance(K0, f"daily:{T0 // DAY}", "daily", T0 // DAY + 2)[1]
    # nothing the instance holds is a past period's key
    assert old_key not in held_bytes(p) and all(k != old_key for k in held_bytes(p.status()))
    # the cron job advances the file; a new instance on it and the running one agree, and nothing is reported
    monkeypatch.setattr(keys_cli, "clock", clock)
    assert main(["keys", "rotate", "--file", str(path)]) == 0
    clock.t += 2  # past the poll interval
    fresh = from_file(path, clock)
    assert fresh.pseudonym("visitor-1") == p.pseudonym("visitor-1") and p.disagreements == 0
    assert p.status().file_period == f"daily:{T0 // DAY + 2}" and p.status().file_behind == 0
    assert read_key_file(path).key != old_key and not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_ratchet_never_goes_backwards(tmp_path):
    clock = Clock(T0 + DAY)
    path = key_file(tmp_path)  # a day behind the clock
    p = from_file(path, clock)
    now_key = p.key()
    clock.t -= DAY  # the clock steps back a day: the key in use stays
    assert p.key() == now_key and p.period() == f"daily:{T0 // DAY + 1}"
    clock.t += 5
    write_key_file(path, KeyFile(f"daily:{T0 // DAY}", K0, "again"))  # an older file of the same chain
    clock.t += 2
    assert p.key() == now_key and p.disagreements == 0


def test_a_file_with_another_key_is_an_error_then_followed(tmp_path, caplog):
    clock = Clock(T0)
    path = key_file(tmp_path)
    p = from_file(path, clock)
    log, ga4 = p.for_destination("log"), p.for_destination("ga4")
    before = p.pseudonym("v"), log.pseudonym("v"), ga4.pseudonym("v")
    other = os.urandom(32)
    write_key_file(path, KeyFile(f"daily:{T0 // DAY}", other))  # re-initialised (keys init --force)
    clock.t += 2
    with caplog.at_level(logging.WARNING, logger="privproxy.pseudonyms"):
        after = p.pseudonym("v"), log.pseudonym("v"), ga4.pseudonym("v")
    assert p.disagreements == 1 and p.status().disagreements == 1
    fresh = from_file(path, clock)
    assert after == (fresh.pseudonym("v"), fresh.for_destination("log").pseudonym("v"),
                     fresh.for_destination("ga4").pseudonym("v"))
    assert all(x != y for x, y in zip(before, after, strict=True))
    (rec,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    text = rec.getMessage()
    assert "another key" in text and str(path) in text
    for secret in (K0, other):
        assert secret.hex() not in text and secret.hex().upper() not in text
    clock.t += 2
    p.pseudonym("w")
    assert p.disagreements == 1  # counted once, not at every look


def test_a_file_from_a_chain_ahead_must_pass_through_the_key_held(tmp_path):
    clock = Clock(T0)
    path = key_file(tmp_path)
    p = from_file(path, clock)
    # the cron host's clock is a little ahead: the file is one period ahead, on the same chain
    n, k = advance(K0, f"daily:{T0 // DAY}", "daily", T0 // DAY + 1)
    write_key_file(path, KeyFile(f"daily:{n}", k))
    clock.t += 2
    assert p.key() == k and p.disagreements == 0
    # a file far in the future is a wrong clock: not followed
    write_key_file(path, KeyFile(f"daily:{n + 30}", os.urandom(32)))
    clock.t += 2
    assert p.key() == k and "ahead" in p.status().file_problem


def test_key_file_written_atomically_with_mode_0600(tmp_path, monkeypatch):
    path = key_file(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {"privproxy_key_file": 1, "period": f"daily:{T0 // DAY}", "key": K0.hex(), "written": ""}
    with open(path) as reader:  # a reader of the old file keeps a whole old file
        write_key_file(path, KeyFile(f"daily:{T0 // DAY + 1}", bytes(32)))
        assert json.loads(reader.read())["key"] == K0.hex()
    assert json.loads(path.read_text())["period"] == f"daily:{T0 // DAY + 1}"
    assert sorted(os.listdir(tmp_path)) == ["key.json"]  # no temporary file left

    def broken(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        write_key_file(path, KeyFile(f"daily:{T0 // DAY + 2}", K0))
    assert json.loads(path.read_text())["period"] == f"daily:{T0 // DAY + 1}"  # untouched
    assert sorted(os.listdir(tmp_path)) == ["key.json"]


def test_a_kubelet_symlink_swap_is_seen(tmp_path):
    # A Secret volume: key.json -> ..data/key.json, ..data -> ..<timestamp>; an update writes a new
    # timestamped directory and renames a new ..data symlink over the old one.
    clock = Clock(T0)
    mount = tmp_path / "keys"
    mount.mkdir()
    first = mount / "..2026_11_09_00_05_00.1"
    first.mkdir()
    write_key_file(first / "key.json", KeyFile(f"daily:{T0 // DAY}", K0))
    os.symlink(first.name, mount / "..data")
    os.symlink("..data/key.json", mount / "key.json")
    p = from_file(mount / "key.json", clock)
    assert p.key() == K0
    clock.t += DAY  # the next day: ratcheted in memory, then the CronJob's new Secret arrives
    in_memory = p.key()
    second = mount / "..2026_11_10_00_05_00.2"
    second.mkdir()
    n, k = advance(K0, f"daily:{T0 // DAY}", "daily", T0 // DAY + 1)
    write_key_file(second / "key.json", KeyFile(f"daily:{n}", k))
    os.symlink(second.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")
    clock.t += 2
    assert p.key() == in_memory == k
    assert p.status().file_period == f"daily:{n}" and p.disagreements == 0


def test_without_a_readable_file_a_process_key_until_the_file_appears(tmp_path, caplog):
    clock = Clock(T0)
    path = tmp_path / "key.json"
    a, b = from_file(path, clock), from_file(path, clock)
    assert a.ephemeral and a.pseudonym("v") != b.pseudonym("v")
    assert "keys init" in a.missing_secret() and "random key" in a.warnings("f.yaml")[0]
    key_file(tmp_path)
    clock.t += 2
    with caplog.at_level(logging.WARNING, logger="privproxy.pseudonyms"):
        assert a.pseudonym("v") == b.pseudonym("v")
    assert not a.ephemeral and a.missing_secret() == "" and a.disagreements == 0
    assert any("now agree" in r.getMessage() for r in caplog.records)


def test_a_broken_file_later_keeps_the_key_in_use(tmp_path, caplog):
    clock = Clock(T0)
    path = key_file(tmp_path)
    p = from_file(path, clock)
    key = p.key()
    path.write_text('{"privproxy_key_file": 1, "period": "daily:x"')
    clock.t += 2
    with caplog.at_level(logging.ERROR, logger="privproxy.pseudonyms"):
        assert p.key() == key
    assert "invalid JSON" in p.status().file_problem and not p.ephemeral
    assert any("unusable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("text, where, message", [
    ('{"privproxy_key_file": 1,\n "period": "daily:x", "key": "00"}', ":2:2:", "`period`"),
    ('{"privproxy_key_file": 1, "period": "daily:20400",\n  "key": "XYZ"}', ":2:3:", "`key`: expected 64"),
    ('{"privproxy_key_file": 1, "period": "daily:3", "key": "' + "0" * 64 + '"}', ":1:", "not a time"),
    ('{"privproxy_key_file": 1, "period": "daily:20400", "key": "' + "0" * 64 + '", "old_key": ""}', ":1:",
     "unknown field"),
    ('{"period": "daily:20400"}', ":1:1:", "not a privproxy key file"),
    ('{"privproxy_key_file": 1,\n\n "period" "daily:1"}', ":3:11:", "invalid JSON"),
])
def test_key_file_errors_say_where_and_what_to_do(tmp_path, text, where, message):
    path = tmp_path / "key.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        read_key_file(path)
    s = str(e.value)
    assert s.startswith(str(path) + where) and message in s and "privproxy keys init --force" in s
    assert "XYZ" not in s


def test_missing_key_file_error_says_how_to_create_it(tmp_path):
    with pytest.raises(ConfigError) as e:
        read_key_file(tmp_path / "nope.json")
    assert "no such key file" in str(e.value) and "privproxy keys init --file" in str(e.value)


def test_a_changed_rotation_converts_the_file_the_same_way_everywhere(tmp_path):
    path = key_file(tmp_path)  # daily
    early, late = Clock(T0), Clock(T0 + 5 * 3600)
    a = from_file(path, early, rotation="hourly")
    b = from_file(path, late, rotation="hourly")  # started five hours later
    early.t = late.t
    assert a.period() == b.period() == f"hourly:{late.t // 3600}"
    assert a.pseudonym("v") == b.pseudonym("v") and a.disagreements == b.disagreements == 0


def test_behind_file_is_said_once_in_the_log_and_in_warnings(tmp_path, caplog):
    clock = Clock(T0)
    path = key_file(tmp_path)
    p = from_file(path, clock)
    assert p.warnings("f.yaml") == []
    clock.t += DAY  # the next day begins; cron has not run yet: quiet during the grace
    p.key()
    clock.t += pseudonyms.ROTATE_GRACE
    with caplog.at_level(logging.WARNING, logger="privproxy.pseudonyms"):
        for _ in range(5):
            clock.t += 2
            p.pseudonym("v")
    said = [r.getMessage() for r in caplog.records if "behind" in r.getMessage()]
    assert len(said) == 1 and "privproxy keys rotate --file" in said[0]
    assert p.status().file_behind == 1
    (w,) = from_file(path, clock).warnings("f.yaml")
    assert w.startswith("f.yaml: ") and "recompute" in w and "keys rotate" in w


def test_fixed_secret_and_ephemeral_modes_say_what_their_keys_allow(monkeypatch):
    monkeypatch.delenv("PRIVPROXY_SECRET", raising=False)
    fixed = Pseudonymizer(Settings(), secret=b"s")
    (w,) = fixed.warnings("f.yaml")
    assert fixed.mode == "secret" and "whoever holds it can recompute" in w and "key_file" in w
    assert fixed.missing_secret() == ""
    eph = Pseudonymizer(Settings())
    (w,) = eph.warnings("f.yaml")
    assert eph.mode == "ephemeral" and "PRIVPROXY_SECRET is not set" in w and "recompute" in w
    assert "PRIVPROXY_SECRET" in eph.missing_secret()


def test_ephemeral_keys_ratchet_and_forget_too(monkeypatch):
    monkeypatch.delenv("PRIVPROXY_SECRET", raising=False)
    clock = Clock(T0)
    p = Pseudonymizer(Settings(), clock=clock)
    old = p.key()
    clock.t += DAY
    assert p.key() == ratchet(old, f"daily:{T0 // DAY + 1}") and old not in held_bytes(p)


def test_destinations_have_unrelated_stable_pseudonyms(tmp_path):
    clock = Clock(T0)
    path = key_file(tmp_path)
    a, b = from_file(path, clock), from_file(path, clock)
    names = ("log", "origin", "ga4", "matomo")
    got = {n: a.for_destination(n).pseudonym("GA1.1.123.456", "cid") for n in names}
    assert len(set(got.values()) | {a.pseudonym("GA1.1.123.456", "cid")}) == len(names) + 1
    assert all(b.for_destination(n).pseudonym("GA1.1.123.456", "cid") == got[n] for n in names)  # instances agree
    log = a.for_destination("log")
    assert log is a.for_destination("log") and log.pseudonym("GA1.1.123.456", "cid") == got["log"]  # stable
    assert log.key() == destination_key(a.key(), "log") != a.key()
    assert log.settings is a.settings and log.period() == a.period() and not log.ephemeral
    mac = hmac.digest(destination_key(a.key(), "log"), b"cid\x00GA1.1.123.456", "sha256")
    assert got["log"] == "pp_" + base64.b32encode(mac).decode()[:16].lower()
    clock.t += DAY  # rotates with the period key
    assert log.pseudonym("GA1.1.123.456", "cid") != got["log"]
    assert log.key() == destination_key(a.key(), "log")
    assert b.for_destination("log").pseudonym("GA1.1.123.456", "cid") == log.pseudonym("GA1.1.123.456", "cid")


def test_destinations_with_a_fixed_secret_and_the_cache_bound():
    clock = Clock(T0)
    a = Pseudonymizer(Settings(), secret=b"s", clock=clock)
    b = Pseudonymizer(Settings(), secret=b"s", clock=clock)
    assert a.for_destination("ga4").pseudonym("x") == b.for_destination("ga4").pseudonym("x")
    assert a.for_destination("ga4").pseudonym("x") != a.for_destination("segment").pseudonym("x")
    for i in range(pseudonyms.MAX_DESTINATIONS + 10):
        a.for_destination(f"vendor-{i}")
    assert len(a._destinations) == pseudonyms.MAX_DESTINATIONS
    late = a.for_destination("vendor-late")
    assert late.pseudonym("x") == b.for_destination("vendor-late").pseudonym("x")
    with pytest.raises(ValueError):
        a.for_destination("")


def test_fingerprints_name_keys_without_revealing_them():
    fp = fingerprint(K0)
    assert fp == hmac.digest(K0, b"privproxy/fingerprint/v1", "sha256")[:8].hex() and fp != fingerprint(bytes(32))
    assert fp not in K0.hex() and "key=" not in repr(KeyFile("daily:1", K0)) and K0.hex() not in repr(KeyFile("d", K0))
    assert hashlib.sha256(K0).hexdigest()[:16] != fp


def test_a_file_several_periods_behind_is_reported_at_once_and_a_broken_one_by_its_line(tmp_path):
    clock = Clock((T0 // DAY) * DAY + 5)  # five seconds into the day: within the grace of a file one day behind
    path = key_file(tmp_path, period=f"daily:{T0 // DAY - 3}")
    (w,) = from_file(path, clock).warnings("f.yaml")
    assert "3 period(s) behind" in w
    path.write_text('{"privproxy_key_file": 1, "period": "daily:20400",\n  "key": 7}')
    p = from_file(path, clock)
    (w,) = p.warnings("f.yaml")
    assert w.startswith(f"f.yaml: pseudonymization.key_file: {path}:2:3: `key`") and "random key" in w
    assert p.ephemeral and str(path) in p.missing_secret()
