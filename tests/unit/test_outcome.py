"""The vocabularies of privproxy.outcome are wire values (metric labels, log fields): pinned, used by the stages
that spell them, and a StrEnum member behaves as its value wherever a string goes."""

from __future__ import annotations

import json

import orjson
import pytest

from privproxy import fields
from privproxy.consent import decision, token
from privproxy.outcome import Action, BeaconConsent, ConsentState, LogStream, Outcome, Result, Source, Stage
from tests.helpers import REPO

# What dashboards, alert rules, log readers and the README rely on: a change here is a change on the wire.
PINNED = {
    Outcome: ("forwarded", "redirected", "refused", "bad_request", "not_forwarded", "head_too_large", "head_timeout",
              "too_large", "upgrade_refused", "client_closed", "upstream_error", "upstream_timeout", "error",
              "acme_challenge"),
    Stage: ("requestheaders", "classify", "client_ip", "cookie", "set_cookie", "https_redirect", "https_headers",
            "access_log", "log_path", "log_referrer", "beacon"),
    ConsentState: ("none", "valid", "malformed", "unknown_key", "forged", "expired", "not_yet_valid", "withdrawn",
                   "revoked", "gpc", "dnt", "tcf", "beacon_opt_out"),
    BeaconConsent: ("none", "given"),
    Action: ("drop", "redact", "hash", "truncate", "generalize", "keep"),
    LogStream: ("access", "linked"),
    Result: ("success", "failure"),
    Source: ("origin", "vendor", "proxy"),
}


@pytest.mark.parametrize("enum", list(PINNED), ids=lambda e: e.__name__)
def test_values_are_pinned(enum):
    assert tuple(m.value for m in enum) == PINNED[enum]


def test_the_stages_take_their_vocabularies_from_here():
    assert decision.STATES == tuple(ConsentState)
    assert set(token.STATES) <= set(ConsentState)  # decide() turns a token's verdict into a ConsentState
    assert set(decision.OVERRIDES) <= set(ConsentState)
    assert fields.ACTIONS == tuple(Action) and fields.ECHO_ACTIONS <= set(Action)


def test_a_member_is_its_value_as_a_string():
    o = Outcome.UPSTREAM_TIMEOUT
    assert o == "upstream_timeout" and str(o) == f"{o}" == "%s" % o == "upstream_timeout"
    assert {"upstream_timeout": 1}[o] == 1 and o in {"upstream_timeout"}
    assert json.dumps({"outcome": o}) == '{"outcome": "upstream_timeout"}'
    assert orjson.dumps({"outcome": o}) == b'{"outcome":"upstream_timeout"}'


def test_every_outcome_is_documented_for_log_readers():
    readme = REPO.joinpath("README.md").read_text()
    assert [o for o in Outcome if f"`{o}`" not in readme] == []
