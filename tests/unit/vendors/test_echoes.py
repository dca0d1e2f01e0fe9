"""Identifier echoes in beacons, names in any spelling, ids sent as objects, and the vendor fields of issue 17
item 7: a value treated as an identifier is treated the same wherever else the beacon carries it."""

from __future__ import annotations

import base64
import gzip
import json
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproxy import beacon, pipeline, policy, vendors
from privproxy.fields import ECHO_ROLES, NOT_IDENTIFIERS, REDACTED
from privproxy.vendors.base import Beacon
from tests.unit.vendors.test_codecs import SCRUBBER, SETTINGS, all_text
from tests.unit.vendors.test_recordings import REQUESTS, as_beacon

DEVICE = "eb77946e-8e23-4f07-b9c5-e442112f1341"


def run(b: Beacon, consent: bool = False, scrubber=SCRUBBER):
    codec = vendors.sniff(SETTINGS.codec_for(b.path), b)
    changes: list = []
    result = beacon.process(codec, b, scrubber, SETTINGS, consent, changes)
    assert result.forward, result.reason
    return result, changes


def body_json(result) -> object:
    raw = result.body
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def mixpanel_form(event: dict) -> Beacon:
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return Beacon("POST", "/track/", "ip=0", "application/x-www-form-urlencoded", "", f"data={quote(data)}".encode())


def mixpanel_event(result) -> dict:
    data = dict(parse_qsl(result.body.decode()))["data"]
    return json.loads(base64.b64decode(data))


def identifiers(changes) -> set[str]:
    """Every value a role or rule treated as an identifier, as the Changes show them."""
    return {c.before for c in changes
            if c.action in ("hash", "drop", "redact") and len(c.before) >= 4 and c.before.lower() not in NOT_IDENTIFIERS
            and ((c.rule.startswith("role:") and c.rule[5:] in ECHO_ROLES) or c.rule in SCRUBBER.rules.ids)}


def strings(value, depth=0) -> list[str]:
    """Every string a collector reads out of a decoded body (numbers and flags left out), decoded recursively."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *strings(v, depth)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v, depth)]
    return [all_text(value, depth)] if isinstance(value, str) else []


# --- mixpanel `$device:<id>` -------------------------------------------------------------------------------
def test_mixpanel_anon_distinct_id_keeps_its_form_and_the_device_pseudonym():
    result, changes = run(mixpanel_form({"event": "$identify", "properties": {
        "token": "t", "distinct_id": "CANARYUID", "$device_id": DEVICE, "$anon_distinct_id": f"$device:{DEVICE}",
        "$user_id": "CANARYUID", "note": f"first seen on {DEVICE}"}}))
    props = mixpanel_event(result)["properties"]
    assert DEVICE not in json.dumps(props)
    assert props["$anon_distinct_id"] == f"$device:{props['$device_id']}"  # mixpanel's identity merge still works
    assert props["note"] == f"first seen on {props['$device_id']}"
    assert "echo:role:device_id" in {c.rule for c in changes}


def test_mixpanel_device_echo_without_the_device_id_field():
    result, _ = run(mixpanel_form({"event": "$identify", "properties": {
        "token": "t", "$anon_distinct_id": f"$device:{DEVICE}", "label": DEVICE}}))
    props = mixpanel_event(result)["properties"]
    assert DEVICE not in json.dumps(props)
    assert props["$anon_distinct_id"] == f"$device:{props['label']}"


# --- Matomo: the member id in an event name -----------------------------------------------------------------
@pytest.mark.parametrize("transport", ["get", "bulk"])
def test_matomo_member_id_echoed_in_an_event_name(transport):
    hit = [("idsite", "1"), ("rec", "1"), ("e_c", "shop"), ("e_a", "pay"), ("e_n", "M-00471100"),
           ("uid", "M-00471100"), ("action_name", "order by M-00471100")]
    if transport == "get":
        b = Beacon("GET", "/matomo.php", urlencode(hit))
    else:
        b = Beacon("POST", "/matomo.php", "", "application/json", "",
                   json.dumps({"requests": ["?" + urlencode(hit)]}).encode())
    result, changes = run(b)
    text = all_text(result.query) + all_text(result.body)
    assert "M-00471100" not in text and "e_c=shop" in text and "e_a=pay" in text
    got = dict(parse_qsl(result.query or json.loads(result.body)["requests"][0].lstrip("?")))
    assert got["e_n"] == got["uid"] and got["action_name"] == f"order by {got['uid']}"
    assert [c.rule for c in changes if c.rule.startswith("echo:")] == ["echo:role:user_id"] * 2


# --- order, documents, nesting ---------------------------------------------------------------------------------
def test_a_copy_before_its_identifier_and_in_an_earlier_event():
    batch = {"batch": [
        {"type": "track", "event": "x", "context": {"page": {"title": "hi USER-1234567"}},
         "properties": {"ref": "USER-1234567", "peer": "ANON-99887766"}, "userId": "USER-1234567"},
        {"type": "track", "event": "y", "anonymousId": "ANON-99887766"}]}
    result, _ = run(Beacon("POST", "/v1/batch", "", "application/json", "", json.dumps(batch).encode()))
    data = body_json(result)
    first = data["batch"][0]
    assert "USER-1234567" not in json.dumps(data) and "ANON-99887766" not in json.dumps(data)
    assert first["properties"]["ref"] == first["userId"]
    assert first["properties"]["peer"] == data["batch"][1]["anonymousId"]


def test_a_copy_in_the_body_of_an_identifier_in_the_url():
    # GA4: the URL's parameters are shared by every hit of the body; the copy is in the second document.
    b = Beacon("POST", "/g/collect", "v=2&tid=G-1&cid=555666777.1700000000&uid=MEMBER-31337",
               "text/plain", "", b"en=page_view&ep.member=MEMBER-31337&ep.cid=555666777.1700000000")
    result, _ = run(b)
    assert "MEMBER-31337" not in result.body.decode() and "555666777" not in result.body.decode()
    q, line = dict(parse_qsl(result.query)), dict(parse_qsl(result.body.decode()))
    assert line["ep.member"] == q["uid"] and line["ep.cid"] == q["cid"] and line["en"] == "page_view"


def test_a_copy_inside_a_nested_document_found_after_it_was_encoded():
    # Snowplow: a base64 context first, the identifier after it: the context is decoded, fixed, encoded again.
    ctx = base64.urlsafe_b64encode(json.dumps({"schema": "iglu:x", "data": [
        {"schema": "iglu:y", "data": {"account": "ACCT-55443322", "plan": "gold"}}]}).encode()).decode().rstrip("=")
    payload = {"schema": "iglu:p", "data": [{"e": "pv", "cx": ctx, "uid": "ACCT-55443322"}]}
    result, _ = run(Beacon("POST", "/com.snowplowanalytics.snowplow/tp2", "", "application/json", "",
                           json.dumps(payload).encode()))
    event = body_json(result)["data"][0]
    inner = json.loads(base64.urlsafe_b64decode(event["cx"] + "=" * (-len(event["cx"]) % 4)))
    assert inner["data"][0]["data"] == {"account": event["uid"], "plan": "gold"}
    assert "=" not in event["cx"] and "ACCT-55443322" not in all_text(result.body)


def test_a_copy_inside_base64_no_codec_decodes_redacts_it():
    blob = base64.b64encode(json.dumps({"account": "ACCT-55443322"}).encode()).decode()
    event = {"event": "x", "properties": {"token": "t", "blob": blob, "$user_id": "ACCT-55443322"}}
    result, _ = run(Beacon("POST", "/track/", "", "application/json", "", json.dumps(event).encode()))
    assert body_json(result)["properties"]["blob"] == REDACTED


def test_structure_and_consent_fields_are_left_alone():
    event = {"api_key": "k", "events": [{"user_id": "u-12345678", "device_id": "d-12345678",
                                         "session_id": 1795991355295, "time": 1795991355295,
                                         "event_type": "x", "insert_id": "u-12345678"}]}
    result, _ = run(Beacon("POST", "/2/httpapi", "", "application/json", "", json.dumps(event).encode()))
    ev = body_json(result)["events"][0]
    assert ev["time"] == 1795991355295  # Amplitude's session id is its start time: `time` is structure
    assert ev["insert_id"] == "u-12345678"  # plain: the SDK's dedup key, never searched


@pytest.mark.parametrize("uid", ["1", "en", "abc", "true", "null", "undefined"])
def test_short_and_placeholder_values_never_echo(uid):
    b = Beacon("GET", "/matomo.php", urlencode([("idsite", "1"), ("rec", "1"), ("uid", uid), ("e_n", uid),
                                                ("lang", "en"), ("action_name", f"x {uid} y")]))
    result, changes = run(b)
    got = dict(parse_qsl(result.query))
    assert got["e_n"] == uid and got["action_name"] == f"x {uid} y"
    assert not [c for c in changes if c.rule.startswith("echo:")]


def test_report_only_echoes_are_counted_and_forwarded(policy_from_yaml):
    s = policy_from_yaml(policy.DEFAULT_FILE.read_text().replace("report_only: false", "report_only: true")).scrubber
    b = Beacon("GET", "/matomo.php", "idsite=1&rec=1&uid=M-00471100&e_n=M-00471100")
    result, changes = run(b, scrubber=s)
    assert result.query == b.query
    assert [(c.rule, c.report_only) for c in changes if c.rule.startswith("echo:")] == [("echo:role:user_id", True)]


# --- ids sent as objects or lists ------------------------------------------------------------------------------
def test_ids_sent_as_objects_and_lists_get_their_role_inside():
    msg = {"type": "track", "event": "x", "userId": {"id": "CANARYUID", "extra": ["CANARYUID2"]},
           "anonymousId": ["CANARYCID", {"v": "CANARYCID3"}, 12345678]}
    result, changes = run(Beacon("POST", "/v1/t", "", "application/json", "", json.dumps(msg).encode()))
    data = body_json(result)
    assert "CANARY" not in json.dumps(data) and "12345678" not in json.dumps(data)
    assert set(data["userId"]) == {"id", "extra"} and len(data["anonymousId"]) == 3  # the shape stays
    assert {c.rule for c in changes} >= {"role:user_id", "role:client_id"}
    ph = {"api_key": "k", "event": "x", "distinct_id": ["CANARYUID"], "properties": {"$device_id": {"a": DEVICE}}}
    result, _ = run(Beacon("POST", "/e/", "", "application/json", "", json.dumps(ph).encode()))
    assert "CANARYUID" not in result.body.decode() and DEVICE not in result.body.decode()


def test_custom_properties_and_unknown_fields_named_like_ids_sent_as_objects():
    msg = {"type": "track", "event": "x", "properties": {"memberId": {"v": ["MEMBER-77x"]}, "email": ["a", "b"],
                                                          "plan": {"tier": "gold"}}}
    result, _ = run(Beacon("POST", "/v1/t", "", "application/json", "", json.dumps(msg).encode()))
    props = body_json(result)["properties"]
    assert "MEMBER-77x" not in json.dumps(props) and props["plan"] == {"tier": "gold"} and "email" not in props
    ph = {"api_key": "k", "event": "x", "distinct_id": "d1", "user_id": {"id": "MEMBER-78x"}}  # unknown top-level
    result, _ = run(Beacon("POST", "/e/", "", "application/json", "", json.dumps(ph).encode()))
    assert "MEMBER-78x" not in result.body.decode()


def test_segment_external_ids():
    msg = {"type": "identify", "userId": "u1", "context": {"externalIds": [
        {"id": "jane@example.com", "type": "email", "collection": "users", "encoding": "none"},
        {"id": "CRM-00998877", "type": "crm_id", "collection": "users", "encoding": "none"}]},
        "traits": {"crm": "CRM-00998877"}}
    result, changes = run(Beacon("POST", "/v1/i", "", "application/json", "", json.dumps(msg).encode()))
    data = body_json(result)
    ext = data["context"]["externalIds"]
    assert "CRM-00998877" not in json.dumps(data) and "jane@example.com" not in json.dumps(data)
    assert [(e["type"], e["collection"], e["encoding"]) for e in ext] == [("email", "users", "none"),
                                                                          ("crm_id", "users", "none")]
    assert data["traits"]["crm"] == ext[1]["id"]


def test_segment_message_ids_carry_the_anonymous_ids_bytes():
    # analytics-next: anonymousId a7da114a-f27f-..., the next uuid drawn from the same pool one byte later.
    msg = {"type": "page", "anonymousId": "a7da114a-f27f-4be2-ab6b-04dd6ff69f22",
           "messageId": "ajs-next-1795991362831-0fa7da11-4af2-4fdb-a2ab-6b04dd6ff69f"}
    result, _ = run(Beacon("POST", "/v1/p", "", "text/plain", "", json.dumps(msg).encode()))
    data = body_json(result)
    assert "6b04dd6ff69f" not in json.dumps(data) and data["messageId"]
    again, _ = run(Beacon("POST", "/v1/p", "", "text/plain", "", json.dumps(msg).encode()))
    assert body_json(again)["messageId"] == data["messageId"]  # still a dedup key


# --- PostHog autocapture ---------------------------------------------------------------------------------------
CHAIN = ('a.btn.nav:attr__class="btn nav"attr__href="https://shop.example/p?uid=CANARYUID&gclid=CANARYGCLID&x=1"'
         'href="/p?email=jane%40example.com&ok=1"nth-child="2"nth-of-type="1"text="Mail jane@example.com \\"now\\"";'
         'div.card:attr__data-note="call +81 90-1234-5678"nth-child="1"nth-of-type="1"')


def posthog(props: dict) -> Beacon:
    return Beacon("POST", "/e/", "", "application/json", "",
                  json.dumps({"api_key": "k", "event": "$autocapture", "properties": {"distinct_id": "d1", **props}})
                  .encode())


def test_posthog_elements_chain_urls_pass_the_url_rules_and_the_rest_the_detectors():
    result, _ = run(posthog({"$elements_chain": CHAIN}))
    chain = body_json(result)["properties"]["$elements_chain"]
    for gone in ("CANARYUID", "CANARYGCLID", "jane", "1234-5678"):
        assert gone not in chain
    assert chain.startswith('a.btn.nav:attr__class="btn nav"attr__href="https://shop.example/p?uid=pp_')
    assert 'x=1"' in chain and 'ok=1"' in chain and 'nth-child="2"nth-of-type="1"text="Mail [email] \\"now\\""' in chain
    assert ';div.card:attr__data-note="call [phone]"nth-child="1"nth-of-type="1"' in chain


def test_posthog_elements_chain_without_personal_data_passes_as_sent():
    chain = 'button.primary:attr__class="primary"nth-child="1"nth-of-type="1"text="Buy \\"gold\\"";form:nth-child="3"'
    result, changes = run(posthog({"$elements_chain": chain}))
    assert body_json(result)["properties"]["$elements_chain"] == chain
    assert not [c for c in changes if c.field != "distinct_id"]


def test_posthog_elements_chain_echo_of_the_distinct_id():
    result, _ = run(posthog({"distinct_id": "DID-12345678", "$elements_chain": 'a:text="hello DID-12345678"'}))
    props = body_json(result)["properties"]
    assert props["$elements_chain"] == f'a:text="hello {props["distinct_id"]}"'


def test_posthog_elements_list():
    elements = [{"tag_name": "a", "href": "https://shop.example/?uid=CANARYUID", "nth_child": 1, "text": "x",
                 "attributes": {"attr__href": "/p?gclid=CANARYGCLID", "attr__title": "jane@example.com"}}]
    result, _ = run(posthog({"$elements": elements}))
    text = json.dumps(body_json(result))
    assert "CANARY" not in text and "jane@" not in text and '"tag_name": "a"' in text.replace('":"', '": "')


# --- names in any spelling in beacons ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["userId", "User-Id", "user[id]", "uid[]", "Customer.ID", "memberId"])
def test_custom_properties_named_like_identifiers(name):
    result, _ = run(Beacon("POST", "/v1/t", "", "application/json", "",
                           json.dumps({"type": "track", "event": "x", "properties": {name: "MEMBER-42x"}}).encode()))
    assert "MEMBER-42x" not in result.body.decode()


@pytest.mark.parametrize("name", ["firstName", "First-Name", "E_Mail", "phoneNumber", "postal-code"])
def test_custom_properties_named_like_contact_data(name):
    result, _ = run(Beacon("POST", "/v1/t", "", "application/json", "",
                           json.dumps({"type": "track", "event": "x", "properties": {name: "Zorblatt"}}).encode()))
    assert "Zorblatt" not in result.body.decode()


@pytest.mark.parametrize("name", ["plan", "s_t", "e_n", "gallery"])
def test_custom_properties_with_other_names_pass(name):
    result, _ = run(Beacon("POST", "/v1/t", "", "application/json", "",
                           json.dumps({"type": "track", "event": "x", "properties": {name: "gold"}}).encode()))
    assert body_json(result)["properties"][name] == "gold"


def test_unknown_beacon_fields_named_like_identifiers():
    result, _ = run(Beacon("GET", "/matomo.php", "idsite=1&rec=1&userId=MEMBER-42x&user%5Bid%5D=MEMBER-43x"))
    assert "MEMBER-4" not in result.query


# --- comma-joined Cookie headers toward a vendor ----------------------------------------------------------------
def test_vendor_cookies_from_a_comma_joined_header():
    ga4 = vendors.VENDORS["ga4"]
    assert pipeline.vendor_cookies("a=1, _ga=GA1.1.1.2,_ga_X=GS1.1.3; sid=9", ga4) == "_ga=GA1.1.1.2; _ga_X=GS1.1.3"
    out = beacon.cookie_header(pipeline.vendor_cookies("a=1, _ga=GA1.1.1.2", ga4), SCRUBBER, SETTINGS, [])
    assert out.startswith("_ga=") and "GA1.1.1.2" not in out


# --- generated identifiers, echoed anywhere ----------------------------------------------------------------
_IDENT = st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ0123456789", min_size=8, max_size=20).map(lambda s: "Q" + s)
_FILLER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -_./:$", max_size=24)


def _plant(vendor: str, ident: str, echoed: str, where: str) -> Beacon:
    if vendor == "ga4":
        hit = [("v", "2"), ("tid", "G-1"), ("cid", "1.2"), ("uid", ident), ("en", "page_view"), (where, echoed)]
        return Beacon("GET", "/g/collect", urlencode(hit))
    if vendor == "matomo":
        return Beacon("GET", "/matomo.php", urlencode([("idsite", "1"), ("rec", "1"), (where, echoed), ("uid", ident)]))
    if vendor == "segment":
        msg = {"type": "track", "event": "x", "context": {"page": {where: echoed}}, "properties": {where: echoed},
               "userId": ident}
        return Beacon("POST", "/v1/t", "", "application/json", "", json.dumps(msg).encode())
    if vendor == "mixpanel":
        return mixpanel_form({"event": "x", "properties": {"token": "t", where: echoed, "$device_id": ident}})
    if vendor == "posthog":
        return posthog({"distinct_id": ident, where: echoed, "$elements_chain": f'a:text="{echoed}"'})
    if vendor == "universal_analytics":  # a batch: the copy in the first hit, the identifier in the second
        lines = [urlencode([("v", "1"), ("t", "event"), ("tid", "UA-1-1"), ("cid", "1.2"), ("el", echoed)]),
                 urlencode([("v", "1"), ("t", "event"), ("tid", "UA-1-1"), ("cid", "1.2"), ("uid", ident)])]
        return Beacon("POST", "/batch", "", "text/plain", "", "\n".join(lines).encode())
    if vendor == "snowplow":
        cx = base64.urlsafe_b64encode(json.dumps({"schema": "iglu:c", "data": [
            {"schema": "iglu:u", "data": {where: echoed}}]}).encode()).decode().rstrip("=")
        payload = {"schema": "iglu:p", "data": [{"e": "se", "se_la": echoed, "cx": cx, "uid": ident}]}
        return Beacon("POST", "/com.snowplowanalytics.snowplow/tp2", "", "application/json", "",
                      json.dumps(payload).encode())
    msg = {"api_key": "k", "events": [{"event_type": "x", "event_properties": {where: echoed}, "user_id": ident}]}
    return Beacon("POST", "/2/httpapi", "", "application/json", "", json.dumps(msg).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vendor=st.sampled_from(["ga4", "matomo", "segment", "mixpanel", "posthog", "amplitude", "universal_analytics",
                               "snowplow"]), ident=_IDENT,
       filler=_FILLER, at=st.integers(0, 24), where=st.sampled_from(["dt", "e_n", "title", "label", "ep.note"]))
def test_a_generated_identifier_echoed_at_any_position_never_survives_without_consent(vendor, ident, filler, at,
                                                                                       where):
    echoed = filler[:at] + ident + filler[at:]
    b = _plant(vendor, ident, echoed, where)
    result, _ = run(b)
    assert ident not in all_text(result.query) + all_text(result.body)
    consented, _ = run(b, consent=True)
    assert (consented.query, consented.body) == (b.query, b.body)


# --- real SDK traffic ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, r", REQUESTS, ids=[n for n, _ in REQUESTS])
def test_no_identifier_of_a_recorded_beacon_survives_in_another_field(name, r):
    b = as_beacon(r)
    result, changes = run(b)
    ids = identifiers(changes)
    assert ids, "the recording carries identifiers"
    body = result.body if result.body[:2] != b"\x1f\x8b" else gzip.decompress(result.body)
    try:
        texts = strings(json.loads(body))
    except ValueError:
        texts = [all_text(body)]
    text = " ".join(texts) + all_text(result.query)
    assert not [i for i in ids if i in text]


def test_recorded_mixpanel_identify_keeps_the_device_link():
    identify = [r for n, r in REQUESTS
                if "mixpanel-browser" in n and "$anon_distinct_id" in all_text(as_beacon(r).body)]
    assert identify, "the recording has mixpanel-browser's $identify"
    before = mixpanel_event(as_beacon(identify[0]))["properties"]
    assert before["$anon_distinct_id"] == f"$device:{before['$device_id']}"
    result, _ = run(as_beacon(identify[0]))
    props = mixpanel_event(result)["properties"]
    assert props["$device_id"] != before["$device_id"]
    assert props["$anon_distinct_id"] == f"$device:{props['$device_id']}"


# --- bounded work -------------------------------------------------------------------------------------------
def _timed(b: Beacon):
    import time

    codec = vendors.sniff(SETTINGS.codec_for(b.path), b)
    t0 = time.perf_counter()
    result = beacon.process(codec, b, SCRUBBER, SETTINGS, False, [])
    return result, time.perf_counter() - t0


def test_a_beacon_built_to_make_the_search_quadratic_is_refused_quickly():
    # thousands of hits, each with a new client id and a copy of another one: every hit's search meets them all
    lines = [urlencode([("en", "x"), ("cid", f"{i:010d}.17"), ("ep.l", f"see {(i * 7) % 4000:010d}.17")])
             for i in range(4000)]
    result, took = _timed(Beacon("POST", "/g/collect", "v=2&tid=G-1", "text/plain", "", "\n".join(lines).encode()))
    assert (result.forward, result.reason) == (False, "too_large") and took < 5


def test_identifiers_sharing_a_prefix_in_many_lengths_do_not_stall():
    ids = ["A" * 8 + "B" * k for k in range(1, 120)]
    batch = [{"type": "track", "event": "x", "userId": i} for i in ids]
    batch.append({"type": "track", "event": "y", "properties": {"t": "A" * 300_000}})
    result, took = _timed(Beacon("POST", "/v1/batch", "", "application/json", "",
                                 json.dumps({"batch": batch}).encode()))
    assert took < 5
    assert not result.forward or not any(i in result.body.decode() for i in ids)


def test_a_server_batch_of_many_users_is_searched_and_forwarded():
    batch = [{"type": "track", "event": "x", "userId": f"user-{i:08d}", "anonymousId": f"anon-{i:08d}",
              "properties": {"note": "lorem ipsum " * 10, "ref": f"https://shop.example/p?x=user-{(i * 7) % 1000:08d}"}}
             for i in range(1000)]
    result, took = _timed(Beacon("POST", "/v1/batch", "", "application/json", "",
                                 json.dumps({"batch": batch}).encode()))
    assert result.forward and took < 5
    assert "user-000" not in result.body.decode() and "anon-000" not in result.body.decode()


def test_a_beacons_identifiers_are_also_taken_out_of_its_referer():
    """The page URL in the Referer carries the member id the beacon sends as `uid`: the vendor gets neither."""
    from privproxy import pipeline
    from privproxy.policy import default
    from privproxy.pipeline import RequestView

    fields = (("Host", "shop.example"), ("Referer", "https://shop.example/members/member-4711-x/orders?tab=1"),
              ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"))
    index: dict[str, list[str]] = {}
    for k, v in fields:
        index.setdefault(k.lower(), []).append(v)
    view = RequestView("192.0.2.10", True, "GET", "shop.example",
                       "/g/collect?v=2&tid=G-1&cid=1.2&uid=member-4711-x&en=page_view", lambda n: index.get(n, []),
                       fields=fields)
    state = pipeline.begin(view, default())
    out = pipeline.forward_beacon(state, view, b"")
    assert out.result.forward
    sent = dict(out.fields)
    assert "member-4711-x" not in sent["Referer"] and "member-4711-x" not in out.target
    assert any(c.rule.startswith("echo:") and c.field == "referer" for c in state.changes)
