import pytest

from privproxy.consent import token
from privproxy.consent.decision import NONE, Decision, KeyRef, Settings, cookie_values, decide
from privproxy.consent.revocations import Revocations
from tests.unit.consent.test_signals import tc_string

KEY = b"0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000
S = Settings(keys=(KeyRef("k1", "X"),), secrets={"k1": KEY})


def tok(member="m-1", scopes=("analytics", "logs"), iat=NOW - 10, ttl=3600):
    return token.mint(member, scopes, iat, ttl, "k1", KEY)


def run(cookies=(), header=(), gpc=(), dnt=(), settings=S):
    return decide(settings, list(cookies), list(header), list(gpc), list(dnt), NOW)


def test_no_token_no_consent():
    assert run() == NONE and run(["session=abc"]) == NONE
    assert not NONE.analytics and not NONE.linked


def test_valid_cookie_links_the_member():
    d = run([f"session=abc; privproxy_consent={tok()}; _ga=GA1.1.1.2"])
    assert d == Decision("valid", "m-1", frozenset({"analytics", "logs"}), "k1")
    assert d.analytics and d.linked


def test_scopes_decide_what_is_linked():
    assert run([f"privproxy_consent={tok(scopes=('logs',))}"]).linked
    assert not run([f"privproxy_consent={tok(scopes=('logs',))}"]).analytics
    d = run([f"privproxy_consent={tok(scopes=('analytics',))}"])
    assert d.analytics and not d.linked


def test_header_source():
    assert run(header=[tok()]).member == "m-1"


@pytest.mark.parametrize("kwargs, state", [
    (dict(cookies=["privproxy_consent=v1.k1.x.y"]), "forged"),
    (dict(cookies=["privproxy_consent=garbage"]), "malformed"),
    (dict(cookies=[f"privproxy_consent={tok(iat=NOW - 7200)}"]), "expired"),
    (dict(cookies=[f"privproxy_consent={tok()}", f"privproxy_consent={tok('m-2')}"]), "malformed"),
    (dict(cookies=[f"privproxy_consent={tok()}; privproxy_consent_withdrawn=1"]), "withdrawn"),
    (dict(cookies=[f"privproxy_consent={tok()}"], gpc=["1"]), "gpc"),
    (dict(cookies=[f"privproxy_consent={tok()}"], dnt=["1"]), "dnt"),
    (dict(cookies=[f"privproxy_consent={tok()}; euconsent-v2={tc_string((1, 7, 8))}"]), "tcf"),
    (dict(cookies=[f"privproxy_consent={tok()}; euconsent-v2=garbage"]), "tcf"),
])
def test_refusals_and_overrides(kwargs, state):
    d = run(**kwargs)
    assert d.state == state and not d.analytics and not d.linked and d.member == ""


def test_strictest_wins_over_a_consenting_tcf_string():
    cookies = [f"privproxy_consent={tok()}; euconsent-v2={tc_string()}"]
    assert run(cookies).state == "valid"
    assert run(cookies, gpc=["1"]).state == "gpc"


def test_same_token_twice_is_fine():
    t = tok()
    assert run([f"privproxy_consent={t}"], header=[t]).state == "valid"


def test_overrides_can_be_turned_off():
    import dataclasses
    s = dataclasses.replace(S, honor_gpc=False, honor_dnt=False, tcf_cookie="")
    assert run([f"privproxy_consent={tok()}; euconsent-v2=garbage"], gpc=["1"], dnt=["1"], settings=s).state == "valid"


def test_revocation_file(tmp_path):
    import dataclasses
    f = tmp_path / "r.txt"
    f.write_text(f"m-1 {NOW - 5}\n")
    s = dataclasses.replace(S, revocations=Revocations(str(f)))
    assert run([f"privproxy_consent={tok()}"], settings=s).state == "revoked"  # issued NOW-10, before
    assert run([f"privproxy_consent={tok(iat=NOW)}"], settings=s).state == "valid"  # consented again later
    assert run([f"privproxy_consent={tok('m-2')}"], settings=s).state == "valid"


def test_disabled_and_keyless():
    import dataclasses
    assert run([f"privproxy_consent={tok()}"], settings=dataclasses.replace(S, enabled=False)) == NONE
    assert run([f"privproxy_consent={tok()}"], settings=dataclasses.replace(S, secrets={})).state == "unknown_key"


def test_overridden_only_ever_gets_stricter():
    valid = Decision("valid", "m", frozenset({"analytics"}), "k1")
    assert valid.overridden("beacon_opt_out") == Decision("beacon_opt_out")
    assert Decision("forged").overridden("beacon_opt_out") == Decision("forged")
    assert NONE.overridden("gpc") == NONE


def test_cookie_values():
    assert cookie_values(['a=1; b="2"', "a=3"], "a") == ["1", "3"]
    assert cookie_values(["ab=1; a"], "a") == []
