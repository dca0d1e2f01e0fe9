"""Every vendor codec: canaries in every identifying field never reach the vendor without consent, the
re-encoded beacon still decodes as the vendor's format with its structure, and untouched beacons pass
byte for byte."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from urllib.parse import unquote_plus

import pytest

from privproxy import beacon, beacons, policy, vendors
from privproxy.vendors.base import Beacon, Limits, Params
from tests.unit.vendors.beacons import CANARIES, CASES, IP, Case

SETTINGS = beacons.Settings()
SCRUBBER = policy.from_text(policy.DEFAULT_FILE.read_text(), "filters.yaml", secret=b"codec-test").scrubber


def all_text(value, depth=0) -> str:
    """Every string a collector could read out of a value: URL-, base64-, gzip- and JSON-decoded, recursively."""
    if depth > 6:
        return ""
    if isinstance(value, bytes):
        if value[:2] == b"\x1f\x8b":
            try:
                value = gzip.decompress(value)  # every member, as receivers inflate them (RFC 1952, Node's zlib)
            except (OSError, EOFError):  # bytes after a member: what a lenient reader could still see
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                value = d.decompress(value) + d.unused_data
        value = value.decode("utf-8", "replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value) + " " + " ".join(all_text(v, depth + 1) for v in
                                                  (value.values() if isinstance(value, dict) else value))
    if not isinstance(value, str):
        return str(value)
    out = [value, unquote_plus(value)]
    s = value.strip()
    if s.startswith(("{", "[")):
        try:
            out.append(all_text(json.loads(s), depth + 1))
        except ValueError:
            pass
    if "=" in s and not s.startswith(("{", "[")):
        out.extend(all_text(v, depth + 1) for _, _, v, _ in Params.parse(s.lstrip("?")).pairs)
    for token in [t for t in s.replace("&", " ").replace("=", " ").split() if len(t) >= 16] + [s]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)) if ("-" in token or "_" in token) \
                else base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            text = raw.decode("utf-8")
            if text.strip().startswith(("{", "[")):
                out.append(all_text(text, depth + 1))
        except (ValueError, UnicodeDecodeError):
            pass
    return " ".join(out)


def run(case: Case, consent: bool = False, scrubber=None, settings=SETTINGS):
    codec = settings.codec_for(case.beacon.path)
    assert codec is not None, f"{case.beacon.path} is not recognized"
    codec = vendors.sniff(codec, case.beacon)
    assert codec.name == case.vendor
    changes: list = []
    s = scrubber or SCRUBBER
    return beacon.process(codec, case.beacon, s, settings, consent, changes), changes


def ids(case: Case) -> str:
    return f"{case.vendor}-{case.name}"


def test_every_vendor_has_cases():
    assert {c.vendor for c in CASES} == set(vendors.VENDORS)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_fixture_really_carries_the_canaries(case):
    # Guards the leak test below: if the fixtures lost their canaries, it would pass vacuously.
    text = all_text(case.beacon.query) + all_text(case.beacon.body)
    assert sum(c in text for c in CANARIES) >= 4


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_no_identifier_reaches_the_vendor_without_consent(case):
    result, changes = run(case)
    assert result.forward, result.reason
    assert result.changed and changes
    text = all_text(result.query) + " " + all_text(result.body)
    leaked = [c for c in CANARIES if c in text]
    assert not leaked, f"leaked {leaked}"
    for marker in case.keep:
        assert marker in text, f"{marker} was lost: the vendor's reports need it"


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_scrubbed_beacon_still_decodes_as_the_vendor_format(case):
    result, _ = run(case)
    again = Beacon(case.beacon.method, case.beacon.path, result.query, case.beacon.content_type,
                   case.beacon.content_encoding, result.body)
    codec = vendors.sniff(SETTINGS.codec_for(case.beacon.path), again)
    assert codec.name == case.vendor
    before = codec.decode(case.beacon, Limits())
    after = codec.decode(again, Limits())
    assert len(after.docs) == len(before.docs)  # batch structure kept: same hits, lines, events
    for a, b in zip(before.docs, after.docs, strict=True):
        if isinstance(a.data, list):
            assert len(b.data) == len(a.data)
        if isinstance(a.data, dict):
            for key in ("events", "batch", "data", "requests"):
                if isinstance(a.data.get(key), list):
                    assert len(b.data[key]) == len(a.data[key])
    if case.beacon.body[:2] == b"\x1f\x8b":
        assert result.body[:2] == b"\x1f\x8b"  # still gzip, as the SDK sent it
        gzip.decompress(result.body)
    second, _ = run(Case(case.vendor, case.name, again, case.keep))
    assert second.forward  # what privproxy sends, privproxy (and so the vendor) can read


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_with_consent_the_beacon_passes_byte_for_byte(case):
    result, changes = run(case, consent=True)
    if result.denied:  # the beacon's own signal refuses: scrubbed anyway
        assert result.changed
        return
    assert result.forward and not result.changed and not changes
    assert result.query == case.beacon.query and result.body == case.beacon.body


def test_beacon_with_nothing_to_scrub_is_forwarded_byte_for_byte():
    b = Beacon("GET", "/g/collect", "v=2&tid=G-1&en=page_view&_p=12&ep.section=watches")
    result, changes = run(Case("ga4", "clean", b))
    assert result.forward and not result.changed and result.query == b.query


def test_ga_client_id_pseudonym_keeps_its_shape_and_is_stable_within_the_day():
    b1 = Beacon("GET", "/g/collect", "v=2&cid=1234567890.1700000000&en=a")
    b2 = Beacon("POST", "/mp/collect", "", "application/json", "",
                b'{"client_id": "1234567890.1700000000", "events": [{"name": "a"}]}')
    r1, _ = run(Case("ga4", "a", b1))
    r2, _ = run(Case("ga4", "b", b2))
    cid = Params.parse(r1.query).get("cid")
    assert cid is not None and cid != "1234567890.1700000000"
    assert len(cid.split(".")[0]) == 10 and cid.split(".")[1].isdigit()
    assert json.loads(r2.body)["client_id"] == cid  # the same visitor in both transports


def test_ip_override_is_truncated_not_dropped():
    b = Beacon("GET", "/collect", f"v=1&t=pageview&tid=UA-1&cid=1.2&uip={IP}")
    result, _ = run(Case("universal_analytics", "ip", b))
    assert Params.parse(result.query).get("uip") == "203.0.113.0"


def test_amplitude_legacy_checksum_is_recomputed():
    import hashlib

    case = next(c for c in CASES if c.vendor == "amplitude" and c.name == "legacy-form")
    result, _ = run(case)
    form = Params.parse(result.body.decode())
    want = hashlib.md5((form.get("v") + form.get("client") + form.get("e") + form.get("upload_time")).encode())
    assert form.get("checksum") == want.hexdigest()


@pytest.mark.parametrize("path,body,ctype,reason", [
    ("/mp/collect", b'{"client_id": "x", ', "application/json", "bad_json"),
    ("/v1/t", b"\x1f\x8bnot really gzip", "application/json", "bad_gzip"),
    ("/e/", b"data=%%%%not-base64", "application/x-www-form-urlencoded", "bad_base64"),
    ("/e/", b"garbage", "text/plain", "unsupported_format"),
    ("/v1/batch", b"[" * 100 + b"]" * 100, "application/json", "too_deep"),
])
def test_undecodable_beacon_is_not_forwarded(path, body, ctype, reason):
    b = Beacon("POST", path, "", ctype, "", body)
    codec = SETTINGS.codec_for(path)
    result = beacon.process(codec, b, SCRUBBER, SETTINGS, False, [])
    assert not result.forward and result.reason == reason and result.body == b""


def test_gzip_bomb_stops_at_the_limit():
    bomb = gzip.compress(b"{" + b" " * (3 * 1024 * 1024) + b"}")
    b = Beacon("POST", "/v1/t", "", "application/json", "gzip", bomb)
    result, _ = run(Case("segment", "bomb", b))
    assert not result.forward and result.reason == "too_large"


def test_posthog_lz64_is_refused_not_guessed():
    b = Beacon("POST", "/e/", "compression=lz64", "application/x-www-form-urlencoded", "", b"data=N4Ig")
    result, _ = run(Case("posthog", "lz", b))
    assert not result.forward and result.reason == "unsupported_encoding"


def test_undecodable_nested_context_is_dropped_and_the_rest_forwarded():
    b = Beacon("GET", "/i", "e=pv&page=page_view&duid=CANARYCID&cx=!!!notbase64!!!")
    result, changes = run(Case("snowplow", "badcx", b))
    p = Params.parse(result.query)
    assert result.forward and p.get("cx") is None and p.get("page") == "page_view"
    assert result.field_errors == ["bad_base64"]


def test_consent_mode_denied_is_respected_even_with_consent():
    b = Beacon("GET", "/g/collect", "v=2&cid=CANARYCID.1&gcs=G100&en=page_view")
    result, _ = run(Case("ga4", "denied", b), consent=True)
    assert result.denied and "CANARYCID" not in result.query


@pytest.mark.parametrize("prefs,denied", [({"Analytics": True, "Advertising": False}, True),
                                          ({"Analytics": True, "Functional": True}, False), ({}, False)])
def test_segment_consent_category_preferences_are_respected_even_with_consent(prefs, denied):
    call = {"type": "track", "userId": "CANARYUID", "event": "Order Completed", "properties": {"plan": "gold_plan"},
            "context": {"consent": {"categoryPreferences": prefs}}}
    b = Beacon("POST", "/v1/batch", "", "application/json", "",
               json.dumps({"batch": [call], "writeKey": "k"}).encode())
    result, _ = run(Case("segment", "consent", b), consent=True)
    assert result.denied is denied
    assert ("CANARYUID" in all_text(result.body)) is not denied  # member consent links, unless the visitor refused
    assert "Order Completed" in all_text(result.body) and "categoryPreferences" in all_text(result.body)


@pytest.mark.parametrize("gcd,denied", [("13l3l3l3l1", False), ("13q3q3q3q5", True), ("11p1p1p1p5", True),
                                        ("13v3v3v3v5", False), ("13t3u3t3t5", True), ("13r3r", False),
                                        ("1", False)])
def test_gcd_is_read_letter_by_letter(gcd, denied):
    from privproxy.vendors import ga4

    assert ga4.denied(Params.parse(f"gcd={gcd}")) is denied


def test_unknown_fields_are_counted_and_scanned():
    b = Beacon("GET", "/g/collect", "v=2&en=page_view&zz_new=someone%40example.com&zz_other=1")
    result, _ = run(Case("ga4", "unknown", b))
    assert result.unclassified == 2
    assert "someone" not in unquote_plus(result.query)


def test_operator_body_rule_overrides_the_codec_role(policy_from_yaml):
    p = policy_from_yaml("version: 1\nrules:\n  - {id: keep-cid, action: keep, scopes: [body], names: [cid]}\n")
    b = Beacon("GET", "/g/collect", "v=2&cid=1.2&en=x")
    result, _ = run(Case("ga4", "rule", b), scrubber=p.scrubber)
    assert Params.parse(result.query).get("cid") == "1.2"


def test_roles_come_from_filters_yaml(policy_from_yaml):
    p = policy_from_yaml("version: 1\nbeacons:\n  roles: {client_id: drop}\n")
    b = Beacon("GET", "/g/collect", "v=2&cid=1.2&en=x")
    result, _ = run(Case("ga4", "role", b), scrubber=p.scrubber, settings=p.beacons)
    assert Params.parse(result.query).get("cid") is None


def test_vendor_cookies_only():
    from privproxy import pipeline

    got = pipeline.vendor_cookies("_ga=GA1.1.1.2; session=abc; _fbp=fb.1.2.3; _ga_XYZ=GS1", vendors.VENDORS["ga4"])
    assert got == "_ga=GA1.1.1.2; _ga_XYZ=GS1"
    assert pipeline.vendor_cookies("_ga=1; sp=abc", vendors.VENDORS["segment"]) == ""


@pytest.mark.parametrize("vendor", sorted(vendors.VENDORS))
def test_vendor_cookies_are_the_ones_fnmatch_selects(vendor):
    # The codecs' globs are matched as one compiled expression: the same cookies as fnmatch.fnmatchcase picks.
    import fnmatch

    from privproxy import pipeline

    codec = vendors.VENDORS[vendor]
    names = ["_ga", "_ga_ABC", "_gid", "_fbp", "_fbc", "mp_x_mixpanel", "ajs_anonymous_id", "ajs_user_id", "_pk_id.1.a",
             "_pk_ses.1.a", "sp", "_sp_id.1", "AMP_abc", "ph_phc_x_posthog", "s_ecid", "AMCV_x%40AdobeOrg", "AMCVS_x",
             "s_vi", "session", "ga", "_GA", "x_ga", "*", "?", "[", "\\", "_ga\n", "", "a.b", "_ga.", "_pk_idx"]
    header = "; ".join(f"{n}=v{i}" for i, n in enumerate(names))
    want = "; ".join(f"{n}=v{i}" for i, n in enumerate(names)
                     if n.strip() and any(fnmatch.fnmatchcase(n.strip(), g) for g in codec.cookies))
    assert pipeline.vendor_cookies(header, codec) == want


# Found by the leak guard (tests/mitm/test_leak_guard.py); kept as regressions.

def test_a_field_the_codec_does_not_know_still_obeys_the_identifier_rules():
    # 004: an id is personal information wherever it appears; `uid` on a Meta Pixel hit is no Meta field
    b = Beacon("GET", "/tr", "id=123&ev=PageView&uid=member-4711&gclid=click-77")
    r = beacon.process(vendors.VENDORS["meta_pixel"], b, SCRUBBER, SETTINGS, False, [])
    assert r.forward and "member-4711" not in r.query and "click-77" not in r.query
    assert "uid=pp_" in r.query and "ev=PageView" in r.query


def test_gzipped_universal_analytics_batch_is_not_mistaken_for_amplitude():
    ua = [c for c in CASES if c.vendor == "universal_analytics" and c.beacon.path == "/batch"][0].beacon
    b = Beacon("POST", "/batch", "", ua.content_type, "gzip", gzip.compress(ua.body))
    codec = vendors.sniff(SETTINGS.codec_for("/batch"), b)
    assert codec.name == "universal_analytics"
    r = beacon.process(codec, b, SCRUBBER, SETTINGS, False, [])
    assert r.forward and not [c for c in CANARIES if c in all_text(r.body)]
    # and Amplitude itself refuses a form without its `e` field instead of guessing
    r = beacon.process(vendors.VENDORS["amplitude"], Beacon("POST", "/batch", "", "", "", ua.body), SCRUBBER,
                       SETTINGS, False, [])
    assert not r.forward and r.reason == "unsupported_format"


def test_a_bare_json_scalar_where_a_document_belongs_is_still_scanned():
    # found by the decoder fuzz in CI: Amplitude's `e` (JSON) holding just a string with an email in it
    b = Beacon("POST", "/2/httpapi", "", "application/x-www-form-urlencoded", "",
               b'client=k&e=%22canary.person%40example.com%22')
    r = beacon.process(vendors.VENDORS["amplitude"], b, SCRUBBER, SETTINGS, False, [])
    assert "canary.person" not in all_text(r.body) + all_text(r.query)
    v = base64.b64encode(b'"canary.person@example.com"').decode()
    r = beacon.process(vendors.VENDORS["mixpanel"], Beacon("GET", "/track", f"data={v}"), SCRUBBER, SETTINGS,
                       False, [])
    assert "canary.person" not in all_text(r.body) + all_text(r.query)


@pytest.mark.parametrize("name,expected", [("gclid", True), ("$initial_gclid", True), ("$session_entry_gclid", True),
                                           ("latest_fbclid", True), ("initial_li_fat_id", True), ("GCLID", True),
                                           ("plan", False), ("gclid_count_x", False), ("mygclid", False)])
def test_click_ids_are_recognised_under_any_prefix_sdks_copy_them_to(name, expected):
    # posthog-js 1.449 copies the landing page's gclid into `$session_entry_gclid` (found by its recording).
    from privproxy.vendors.base import is_click_id

    assert is_click_id(name) is expected


def test_amplitude_remote_ip_directive_passes_and_real_addresses_do_not():
    # @amplitude/analytics-browser sends "ip": "$remote" (use the upload's address: behind the proxy, the
    # proxy's); a "[redacted]" there would make the HTTP API refuse the event.
    events = [{"event_type": "purchase", "user_id": "CANARYUID", "ip": "$remote"},
              {"event_type": "purchase", "user_id": "CANARYUID", "ip": "203.0.113.77"}]
    body = json.dumps({"api_key": "k", "events": events}).encode()
    b = Beacon("POST", "/2/httpapi", "", "application/json", "", body)
    result, _ = run(Case("amplitude", "remote", b))
    out = json.loads(result.body)["events"]
    assert out[0]["ip"] == "$remote" and out[1].get("ip") in (None, "203.0.113.0")
