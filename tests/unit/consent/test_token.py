import base64
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from privproxy.consent import token

KEY = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"
NOW = 1_800_000_000


def mint(member="m-1", scopes=("analytics", "logs"), iat=NOW - 10, ttl=3600, kid="k1", key=KEY):
    return token.mint(member, scopes, iat, ttl, kid, key)


def test_round_trip_carries_member_scopes_and_times():
    v = token.verify(mint(scopes=("logs",)), {"k1": KEY}, NOW)
    assert v.valid and v.token == token.Token("m-1", frozenset({"logs"}), NOW - 10, NOW + 3590, "k1")


def test_token_is_cookie_safe():
    t = mint(member="a.b_c:d@e+f-g")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", t) and "=" not in t and len(t) <= token.MAX_TOKEN


def test_spec_example_verifies():
    doc = (Path(__file__).parents[3] / "docs" / "consent-token.md").read_text()
    example = re.search(r"^token\s+(v1\.\S+)$", doc, re.M).group(1)
    v = token.verify(example, {"k1": KEY}, 1767225600 + 100)
    assert v.valid and v.token.member == "member-4711" and v.token.scopes == {"analytics", "logs"}
    assert v.token.expires_at == 1769817600
    assert mint("member-4711", iat=1767225600, ttl=30 * 86400) == example


def test_independent_implementation_agrees():
    # Built by hand from the spec, not with token.mint.
    import hashlib
    import hmac
    payload = base64.urlsafe_b64encode(b'{"sub":"x","scp":["analytics"],"iat":1,"exp":4000000000}').rstrip(b"=")
    signed = b"v1.kk." + payload
    sig = base64.urlsafe_b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).rstrip(b"=")
    v = token.verify((signed + b"." + sig).decode(), {"kk": KEY}, NOW)
    assert v.valid and v.token.member == "x" and v.token.scopes == {"analytics"}


def _tamper_payload(t: str, **changes) -> str:
    v, kid, payload, sig = t.split(".")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    return ".".join([v, kid, base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode(), sig])


@pytest.mark.parametrize("make, state", [
    (lambda: _tamper_payload(mint(), sub="someone-else"), "forged"),
    (lambda: _tamper_payload(mint(), exp=NOW + 10**8), "forged"),
    (lambda: mint(key=OTHER), "forged"),  # right key id, wrong key
    (lambda: mint()[:-2] + ("AA" if not mint().endswith("AA") else "BB"), "forged"),
    (lambda: mint(kid="k9"), "unknown_key"),
    (lambda: mint(iat=NOW - 7200, ttl=3600), "expired"),
    (lambda: mint(iat=NOW - 3600, ttl=3600), "expired"),  # exp == now is over
    (lambda: mint(iat=NOW + 3600), "not_yet_valid"),
    (lambda: "", "malformed"),
    (lambda: "v2.k1.abc.def", "malformed"),
    (lambda: "v1.k1.abc", "malformed"),
    (lambda: "v1.k 1.abc.def", "malformed"),
    (lambda: "v1." + "k" * 17 + ".abc.def", "malformed"),
    (lambda: "v1.k1." + "A" * 2000 + ".x", "malformed"),
    (lambda: "v1.k1.é.sig", "malformed"),
    (lambda: mint() + "=", "malformed"),
])
def test_every_refusal_has_its_state(make, state):
    v = token.verify(make(), {"k1": KEY}, NOW)
    assert v.state == state and not v.valid
    assert "someone-else" not in v.detail and "m-1" not in v.detail


def _signed(payload: bytes, kid="k1", key=KEY) -> str:
    import hashlib
    import hmac
    signed = f"v1.{kid}." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    mac = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return signed + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@pytest.mark.parametrize("payload", [
    b"not json", b"[1,2]", b'{"sub":"m","scp":["logs"],"iat":1}', b'{"sub":"","scp":[],"iat":1,"exp":2}',
    b'{"sub":"m m","scp":[],"iat":1,"exp":4000000000}', b'{"sub":"m","scp":"logs","iat":1,"exp":4000000000}',
    b'{"sub":"m","scp":[],"iat":1.5,"exp":4000000000}', b'{"sub":"m","scp":[],"iat":true,"exp":4000000000}',
    b'{"sub":"m","scp":[],"iat":10,"exp":5}',
])
def test_signed_but_malformed_payloads_are_refused(payload):
    assert token.verify(_signed(payload), {"k1": KEY}, NOW).state in ("malformed", "expired")


def test_unknown_scopes_are_ignored_never_widen():
    t = _signed(b'{"sub":"m","scp":["everything","analytics"],"iat":1,"exp":4000000000}')
    v = token.verify(t, {"k1": KEY}, NOW)
    assert v.valid and v.token.scopes == {"analytics"}


def test_key_rotation_old_and_new_keys_accepted_until_old_removed():
    old, new = mint(kid="k1", key=KEY), mint(kid="k2", key=OTHER)
    both = {"k2": OTHER, "k1": KEY}
    assert token.verify(old, both, NOW).valid and token.verify(new, both, NOW).valid
    assert token.verify(old, {"k2": OTHER}, NOW).state == "unknown_key"
    assert token.verify(new, {"k2": KEY}, NOW).state == "forged"  # same id, different secret


def test_max_ttl():
    t = mint(ttl=10 * 86400)
    assert token.verify(t, {"k1": KEY}, NOW, max_ttl=86400).state == "malformed"
    assert token.verify(t, {"k1": KEY}, NOW, max_ttl=30 * 86400).valid


@pytest.mark.parametrize("bad", [dict(member="has space"), dict(member="x" * 129), dict(scopes=()),
                                 dict(scopes=("ads",)), dict(kid="bad id"), dict(ttl=0)])
def test_mint_refuses_what_the_spec_does_not_allow(bad):
    with pytest.raises(ValueError):
        mint(**bad)


@pytest.mark.parametrize("text, seconds", [("1s", 1), ("15m", 900), ("12h", 43200), ("30d", 2592000),
                                           ("2w", 1209600), ("90", 90)])
def test_parse_duration(text, seconds):
    assert token.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "1y", "-1d", "1.5h", "d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        token.parse_duration(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_verify_never_raises_and_never_accepts_noise(text):
    assert token.verify(text, {"k1": KEY}, NOW).state != "valid"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=6, max_value=200), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_refused(pos, byte):
    t = mint()
    i = pos % len(t)
    changed = t[:i] + chr(byte) + t[i + 1:]
    if changed == t:
        return
    assert token.verify(changed, {"k1": KEY}, NOW).state != "valid"
