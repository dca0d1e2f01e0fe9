"""Field rules: names across spellings in the scopes the page spells, exact elsewhere; identifier echoes
(issue 17 item 7)."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import fields
from privproxy.fields import ECHO_MIN_INSIDE, REDACTED, Echoes, Rule, RuleSet, list_base, normalize


def rule(id_: str, action: str, scopes: tuple[str, ...], *names: str) -> Rule:
    return Rule(id_, action, frozenset(scopes), names)


RULES = RuleSet.build((
    rule("ids", "hash", ("query", "body", "referrer"), "uid", "user_id", "userid", "cid", "session_id", "sid"),
    rule("mail", "redact", ("query",), "email", "e-mail", "first_name"),
    rule("utm", "keep", ("query",), "utm_i*"),
    rule("ga", "hash", ("cookie", "query"), "_ga", "_ga_*"),
    rule("meta", "hash", ("query",), "ud[em]"),
    rule("secret", "drop", ("query",), "code", "token"),
    rule("ua", "generalize", ("header",), "user-agent"),
))


@pytest.mark.parametrize("scope, name, rule_id", [
    # the spellings of issue 17, in each scope the page or the SDK spells
    ("query", "userId", "ids"), ("query", "user-id", "ids"), ("query", "UID", "ids"), ("query", "user[id]", "ids"),
    ("query", "uid[]", "ids"), ("query", "uid[0]", "ids"), ("query", "User.Id", "ids"), ("query", "USER_ID", "ids"),
    ("query", "user id", "ids"), ("query", "userId[]", "ids"), ("query", "user[id][]", "ids"),
    ("query", " uid", "ids"), ("query", "UID[12]", "ids"), ("query", "Session-Id", "ids"), ("query", "sid[]", "ids"),
    ("body", "userId", "ids"), ("body", "User.Id", "ids"), ("referrer", "user-id", "ids"),
    ("referrer", "uid[]", "ids"),
    ("query", "E_Mail", "mail"), ("query", "eMail", "mail"), ("query", "firstName", "mail"),
    ("query", "first.name", "mail"), ("query", "email[]", "mail"), ("query", "Email[0]", "mail"),
    ("query", "utm_id[]", "utm"),  # a glob, its list form
    ("query", "ud[em]", "meta"), ("query", "UD[EM]", "meta"), ("query", "ud_em", "meta"),  # brackets literal
    ("query", "Token", "secret"), ("query", "token[]", "secret"),
    ("cookie", "_ga", "ga"), ("cookie", "_GA_XYZ", "ga"), ("header", "User-Agent", "ua"),
])
def test_spellings_of_a_name_find_its_rule(scope, name, rule_id):
    got = RULES.find(scope, name)
    assert got is not None and got.id == rule_id, (scope, name, got)


@pytest.mark.parametrize("scope, name", [
    # separators removed, short names would collide with unrelated ones: s_id (site), c_id (campaign), e_n
    ("query", "s_id"), ("query", "c_id"), ("query", "u_id"), ("query", "u.id"), ("query", "e_n"), ("query", "ui_d"),
    # globs keep their exact semantics: `_ga_*` normalized would be `ga*`
    ("query", "gallery"), ("query", "ga_x"), ("query", "GA-1"), ("query", "utmid"), ("query", "utm-id"),
    # nothing but a prefix or suffix in common
    ("query", "user_identity"), ("query", "userids"), ("query", "guid"), ("query", "uidx"), ("query", "my_uid"),
    ("query", "codec"), ("query", "tokens"), ("query", "emails"),
    # `[key]` joins the key to the name: `user[email]` is not `email`
    ("query", "user[email]"), ("query", "data[token]"),
    # names are exact in cookies, Set-Cookie and headers: servers read them byte for byte
    ("cookie", "_g-a"), ("cookie", "_ga[]"), ("cookie", "user_id"), ("header", "useragent"),
    ("header", "user_agent"), ("path", "userId"),
    ("query", ""), ("query", "[]"), ("query", "[0]"), ("query", "_-. "),
])
def test_spellings_that_are_other_names_find_nothing(scope, name):
    assert RULES.find(scope, name) is None, (scope, name)


def test_an_exact_name_beats_a_normalized_one_and_the_first_rule_wins():
    rs = RuleSet.build((rule("a", "hash", ("query",), "user_id"), rule("b", "drop", ("query",), "userid", "user-id")))
    assert rs.find("query", "userid").id == "b"  # exact
    assert rs.find("query", "user-id").id == "b"  # exact
    assert rs.find("query", "User.Id").id == "a"  # normalized: written first


def test_normalize_and_list_base():
    assert normalize("User.Id") == normalize("user-id") == normalize("user[id]") == normalize("userId[0]") == "userid"
    assert list_base("UID[]") == list_base("uid[7]") == "uid"
    assert list_base("user[id]") == "user[id]"


# --- echoes --------------------------------------------------------------------------------------------------
def test_equal_values_of_4_characters_and_more_are_copies():
    e = Echoes()
    for short in ("1", "en", "abc"):
        e.learn(short, "pp_x", "ids", "hash")
    e.learn("4711", "pp_member", "ids", "hash")
    assert len(e) == 1
    assert e.find("4711") == ("pp_member", [e.known["4711"]])
    assert e.find("en") is None and e.find("a 4711 b") is None  # 4 to 7 characters: equal only


def test_values_of_8_characters_and_more_are_found_inside_others():
    e = Echoes()
    e.learn("eb77946e-8e23", "pp_dev", "role:device_id", "hash")
    e.learn("CANARYGCLID", None, "click-ids", "drop")
    after, hits = e.find("$device:eb77946e-8e23 and CANARYGCLIDx")
    assert after == f"$device:pp_dev and {REDACTED}x"
    assert {h.rule for h in hits} == {"echo:role:device_id", "echo:click-ids"}
    assert {h.action for h in hits} == {"hash", "redact"}


def test_placeholders_are_no_identifiers():
    e = Echoes()
    for v in ("null", "undefined", "EMPTY", "Anonymous", "true", "(not set)", REDACTED):
        e.learn(v, "pp_x", "ids", "hash")
    assert not e and e.find("undefined") is None


def test_the_longer_identifier_first_and_report_only_copies_stay():
    e = Echoes()
    e.learn("member-42", "pp_short", "ids", "hash")
    e.learn("member-42-extra", "pp_long", "ids", "hash")
    e.learn("trialvalue-1", "pp_t", "trial", "hash", report_only=True)
    after, hits = e.find("x member-42-extra y member-42 z trialvalue-1")
    assert after == "x pp_long y pp_short z trialvalue-1"
    assert [h.report_only for h in hits if h.rule == "echo:trial"] == [True]


def test_copies_in_another_case_or_percent_encoded_are_found():
    e = Echoes()
    e.learn("auth0|5f7c8ec7", "pp_user", "ids", "hash")
    e.learn("Jane Q. Canary", None, "role:contact", "drop")
    assert e.find("$device:AUTH0|5F7C8EC7")[0] == "$device:pp_user"
    assert e.find("https://a.example/?u=auth0%7C5f7c8ec7&x=1")[0] == "https://a.example/?u=pp_user&x=1"
    assert e.find("https://a.example/?u=auth0%7c5F7C8EC7")[0] == "https://a.example/?u=pp_user"
    assert e.find("name=Jane+Q.+Canary&ok=1")[0] == f"name={REDACTED}&ok=1"
    assert e.find("q=jane%20q%2E%20canary")[0] == f"q={REDACTED}"
    # encoded twice: it cannot be replaced where it stands, so nothing of the value is kept
    assert e.find("https://a.example/?next=%2F%3Fu%3Dauth0%257C5f7c8ec7") == (REDACTED, [e.known["auth0|5f7c8ec7"]])


def test_since_skips_the_identifiers_already_checked():
    e = Echoes()
    e.learn("first-identifier", "pp_1", "ids", "hash")
    e.learn("second-identifier", "pp_2", "ids", "hash")
    assert e.find("first-identifier", since=1) is None
    assert e.find("a second-identifier", since=1)[0] == "a pp_2"


_ID = st.text(alphabet="abcdef0123456789-_.:", min_size=ECHO_MIN_INSIDE, max_size=24)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(_ID, min_size=1, max_size=40, unique=True), pick=st.data(),
       noise=st.text(alphabet="ab01-:/ ", max_size=40))
def test_one_pass_scan_replaces_what_a_search_per_identifier_replaces(ids, pick, noise):
    # Beyond a few identifiers the search is one pass over the text: it must give the same text.
    e = Echoes()
    for i, v in enumerate(ids):
        e.learn(v, f"pp_{i}", "ids", "hash")
    planted = pick.draw(st.lists(st.sampled_from(ids), max_size=4))
    text = noise + "|".join(planted) + noise
    expected = text
    for v in sorted(ids, key=len, reverse=True):
        expected = expected.replace(v, f"pp_{ids.index(v)}")
    for few in (0, 64):  # the one-pass scan, and `in` per identifier
        with mock.patch.object(fields, "_FEW", few):
            got = e.find(text)
        after = got[0] if got is not None else text
        if text in e.known:  # the whole text is one identifier: it becomes its replacement
            assert after == e.known[text].replacement
            continue
        assert after == expected
        assert not any(v in after for v in planted)
