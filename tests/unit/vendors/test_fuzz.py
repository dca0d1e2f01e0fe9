"""Hypothesis against every decoder: whatever arrives, `beacon.process` never raises, and an email planted
anywhere never reaches the vendor (it is scrubbed, or the beacon is not forwarded)."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproxy import beacon, vendors
from privproxy.vendors.base import Beacon
from tests.unit.vendors.test_codecs import SCRUBBER, SETTINGS, all_text

CANARY = "fuzz.canary@example.org"
# CI runs a bounded number of examples; PRIVPROXY_FUZZ_EXAMPLES=5000 runs a longer search on demand.
N = int(os.environ.get("PRIVPROXY_FUZZ_EXAMPLES", "200"))
PATHS = sorted({p.replace("*", "/x") if p.startswith("*") else p.replace("*", "x")
                for c in vendors.VENDORS.values() for p in c.paths})
NAMES = sorted({"cid", "uid", "dl", "data", "e", "cx", "ue_px", "properties", "traits", "events", "batch",
                "requests", "context", "user_properties", "$set", "ud[em]", "xdm", "identityMap", "p", "u",
                "compression", "params", "ep.x", "_cvar", "client", "zz", "email", "url"})

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.sampled_from([CANARY, f"x {CANARY} y", "https://a.example/?m=" + CANARY, "plain"])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(NAMES), children, max_size=5)),
    max_leaves=20)


def check(b: Beacon) -> None:
    codec = vendors.sniff(SETTINGS.codec_for(b.path), b)
    result = beacon.process(codec, b, SCRUBBER, SETTINGS, False, [])
    if result.forward:
        assert CANARY not in all_text(result.query) + all_text(result.body)
    else:
        assert result.body == b"" and result.reason
        assert result.reason != "internal_error", "a decoder bug, caught by the fail-closed guard"


@settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=300), ctype=st.sampled_from(
    ["", "application/json", "text/plain", "application/x-www-form-urlencoded"]),
    encoding=st.sampled_from(["", "gzip", "br"]))
def test_random_bytes(path, body, ctype, encoding):
    check(Beacon("POST", path, "", ctype, encoding, body))


@settings(max_examples=2 * N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), doc=json_values, form=st.booleans(), b64=st.booleans())
def test_structured_json_with_planted_emails(path, doc, form, b64):
    raw = json.dumps(doc)
    if form:
        import base64

        value = base64.b64encode(raw.encode()).decode() if b64 else raw
        body = f"data={quote(value)}&e={quote(raw)}".encode()
        check(Beacon("POST", path, "", "application/x-www-form-urlencoded", "", body))
    else:
        check(Beacon("POST", path, "", "application/json", "", raw.encode()))


@settings(max_examples=N, deadline=None)
@given(path=st.sampled_from(PATHS), pairs=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(
    [CANARY, "1", quote(CANARY), "https://x.example/p?email=" + quote(CANARY), "%ZZ%", "%FF%FE", ""])),
    max_size=8))
def test_query_strings(path, pairs):
    query = "&".join(f"{quote(k)}={quote(v, safe='%')}" if "%" in v else f"{quote(k)}={quote(v)}" for k, v in pairs)
    check(Beacon("GET", path, query))
