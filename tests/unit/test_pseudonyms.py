"""Rotating keyed pseudonyms: same secret -> same pseudonym; a new period -> unlinkable (C2, C11; 004 disposal)."""

from __future__ import annotations

from privproxy.pseudonyms import Pseudonymizer, Settings


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
    import base64

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
    import base64
    import hashlib
    import hmac

    clock = Clock(86400 * 20000 + 5)
    p = Pseudonymizer(Settings(), secret=b"s", clock=clock)
    for step in (0, 3600, 86400, 86400 * 7, -86400):
        clock.t += step
        key = hmac.new(b"s", f"privproxy/pseudonym/v1/{p.period()}".encode(), hashlib.sha256).digest()
        for value, field in (("GA1.1.123.456", "_ga"), ("", ""), ("ü" * 200, "uid")):
            mac = hmac.digest(key, f"{field}\x00{value}".encode(), "sha256")
            assert p.pseudonym(value, field) == "pp_" + base64.b32encode(mac).decode()[:16].lower()
        assert p.key() == key
