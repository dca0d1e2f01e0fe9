"""Beacons of every vendor and transport, written from each vendor's public documentation, with canary
values in every identifying field the vendor defines. Shared by the codec, leak and fuzz tests."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from privproxy.vendors.base import Beacon

EMAIL = "canary.person@example.com"
PHONE = "+81 90-1234-5678"
IP = "203.0.113.77"
UA = "CanaryBrowser/9.9 (CANARYUA; X11)"
PAGE = f"https://shop.example/item?id=7&email={quote(EMAIL)}&gclid=CANARYGCLIDURL"
REF = "https://search.example/?q=watch&fbclid=CANARYFBCLIDREF"

# Values that are identifiers wherever they appear: none may reach the vendor without consent.
CANARIES = ("CANARYCID", "CANARYUID", "CANARYSID", "CANARYDID", "CANARYGCLID", "CANARYFBC", "canary.person",
            "1234-5678", IP, "CANARYUA", "CANARYNAME", "CANARYFBCLID", "CANARYHASHEDEMAIL", "CANARYECID",
            "CANARYPHONEHASH")
# Values that are not identifying and must still reach the vendor, or its reports break.
KEEP = ("page_view", "checkout_step", "gold_plan")


@dataclass(frozen=True)
class Case:
    vendor: str
    name: str
    beacon: Beacon
    keep: tuple[str, ...] = KEEP


def q(pairs) -> str:
    return urlencode(pairs)


def b64(obj, urlsafe=False) -> str:
    raw = json.dumps(obj).encode()
    return (base64.urlsafe_b64encode(raw).decode().rstrip("=") if urlsafe else base64.b64encode(raw).decode())


def get(vendor, name, path, pairs, keep=KEEP) -> Case:
    return Case(vendor, name, Beacon("GET", path, q(pairs)), keep)


def post(vendor, name, path, body, ctype="application/json", query="", encoding="", keep=KEEP) -> Case:
    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Case(vendor, name, Beacon("POST", path, query, ctype, encoding, data), keep)


GA4_HIT = [("v", "2"), ("tid", "G-TEST123"), ("gtm", "45je"), ("_p", "1700000000123"), ("gcs", "G111"),
           ("gcd", "13l3l3l3l1"), ("cid", "CANARYCID.1700000000"), ("ul", "ja-jp"), ("sr", "1920x1080"),
           ("uaa", "x86"), ("uafvl", "CanaryBrand;120.0.6099.109"), ("uam", "CANARYDID-model"),
           ("_s", "1"), ("sid", "CANARYSID"), ("sct", "3"), ("seg", "1"), ("uid", "CANARYUID"),
           ("dl", PAGE), ("dr", REF), ("dt", "Watches"), ("en", "page_view"), ("_uip", IP), ("_ua", UA),
           ("ep.plan", "gold_plan"), ("ep.contact_email", EMAIL), ("up.phone", PHONE),
           ("em", "tv.1~em.CANARYHASHEDEMAIL"),
           ("gclid", "CANARYGCLID"), ("ep.step", "checkout_step"), ("_et", "1234")]
GA4_MP = {
    "client_id": "CANARYCID.1700000000", "user_id": "CANARYUID", "timestamp_micros": 1700000000000000,
    "user_properties": {"email": {"value": EMAIL}, "plan": {"value": "gold_plan"},
                        "full_name": {"value": "CANARYNAME"}},
    "user_data": {"sha256_email_address": "CANARYHASHEDEMAIL", "sha256_phone_number": "CANARYPHONEHASH",
                  "address": [{"sha256_first_name": "CANARYNAME"}]},
    "ip_override": IP, "user_agent": UA, "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
    "events": [{"name": "page_view", "params": {"session_id": "CANARYSID", "engagement_time_msec": 100,
                                                 "page_location": PAGE, "page_referrer": REF,
                                                 "gclid": "CANARYGCLID", "step": "checkout_step"}},
               {"name": "purchase", "params": {"transaction_id": "T1", "value": 12.5, "currency": "JPY",
                                                "items": [{"item_id": "SKU1", "item_name": "gold_plan"}]}}]}

UA_HIT = [("v", "1"), ("t", "pageview"), ("tid", "UA-1234-5"), ("cid", "CANARYCID.1700000000"), ("uid", "CANARYUID"),
          ("uip", IP), ("ua", UA), ("dl", PAGE), ("dr", REF), ("dt", "page_view"), ("gclid", "CANARYGCLID"),
          ("cd1", EMAIL), ("cd2", "gold_plan"), ("ec", "checkout_step"), ("sr", "1920x1080"), ("z", "123")]

MATOMO_HIT = [("idsite", "1"), ("rec", "1"), ("action_name", "page_view"), ("url", PAGE), ("urlref", REF),
              ("_id", "CANARYCID0000ab"), ("uid", "CANARYUID"), ("cid", "CANARYCID0000cd"), ("cip", IP),
              ("ua", UA), ("res", "1920x1080"), ("e_c", "checkout_step"), ("dimension1", "gold_plan"),
              ("dimension2", EMAIL), ("_cvar", json.dumps({"1": ["email", EMAIL], "2": ["plan", "gold_plan"]})),
              ("uadata", json.dumps({"model": "CANARYDID", "platformVersion": "15"})), ("_gclid", "CANARYGCLID"),
              ("h", "10"), ("m", "5"), ("s", "3")]

SP_CX = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": [
    {"schema": "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2",
     "data": {"userId": "CANARYCID-0000-4000-8000-000000000000", "sessionId": "CANARYSID", "sessionIndex": 3,
              "previousSessionId": "CANARYSID-prev", "storageMechanism": "COOKIE_1"}},
    {"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"email": EMAIL, "plan": "gold_plan",
                                                              "phone": PHONE}}]}
SP_UE = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
         "data": {"schema": "iglu:com.acme/checkout/jsonschema/1-0-0",
                  "data": {"step": "checkout_step", "contact": EMAIL, "gclid": "CANARYGCLID"}}}
SP_EVENT = {"e": "pv", "url": PAGE, "refr": REF, "page": "page_view", "tv": "js-3.17.0", "p": "web",
            "aid": "shop", "duid": "CANARYCID-duid", "nuid": "CANARYCID-nuid", "uid": "CANARYUID", "sid": "CANARYSID",
            "vid": "3", "ip": IP, "ua": UA, "fp": "CANARYDID", "res": "1920x1080", "dtm": "1700000000000",
            "cx": b64(SP_CX, urlsafe=True), "ue_px": b64(SP_UE, urlsafe=True), "eid": "e1"}
SP_PAYLOAD = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
              "data": [SP_EVENT, dict(SP_EVENT, e="ue", cx=None, co=json.dumps(SP_CX), ue_pr=json.dumps(SP_UE),
                                      ue_px=None)]}
for _e in SP_PAYLOAD["data"]:
    for _k in [k for k, v in _e.items() if v is None]:
        del _e[_k]

SEG_CONTEXT = {"ip": IP, "userAgent": UA, "locale": "ja-JP",
               "page": {"url": PAGE, "referrer": REF, "path": "/item", "title": "page_view",
                        "search": "?gclid=CANARYGCLID"},
               "campaign": {"name": "summer", "gclid": "CANARYGCLID"}, "traits": {"email": EMAIL, "name": "CANARYNAME"},
               "device": {"id": "CANARYDID", "advertisingId": "CANARYDID-ad"},
               "library": {"name": "analytics.js", "version": "next-1.70.0"}}
SEG_TRACK = {"type": "track", "event": "checkout_step", "userId": "CANARYUID", "anonymousId": "CANARYCID",
             "properties": {"plan": "gold_plan", "email": EMAIL, "phone": PHONE, "coupon": "X1"},
             "context": SEG_CONTEXT, "messageId": "ajs-next-1", "timestamp": "2026-11-22T00:00:00.000Z",
             "writeKey": "wk123", "sentAt": "2026-11-22T00:00:00.000Z"}
SEG_IDENTIFY = {"type": "identify", "userId": "CANARYUID", "anonymousId": "CANARYCID",
                "traits": {"email": EMAIL, "firstName": "CANARYNAME", "plan": "gold_plan", "phone": PHONE,
                           "address": {"street": "CANARYNAME 1-2-3", "city": "Tokyo"}},
                "context": SEG_CONTEXT, "messageId": "ajs-next-2"}

MP_EVENT = {"event": "page_view", "properties": {
    "token": "tok123", "distinct_id": "$device:CANARYCID", "$device_id": "CANARYDID", "$user_id": "CANARYUID",
    "$current_url": PAGE, "$referrer": REF, "$initial_referrer": REF, "$os": "Windows", "$browser": "Chrome",
    "$screen_height": 1080, "$screen_width": 1920, "mp_lib": "web", "$insert_id": "ins1", "time": 1700000000.123,
    "plan": "gold_plan", "email": EMAIL, "gclid": "CANARYGCLID", "$ip": IP, "step": "checkout_step"}}
MP_ENGAGE = {"$token": "tok123", "$distinct_id": "CANARYUID", "$device_id": "CANARYDID",
             "$set": {"$email": EMAIL, "$name": "CANARYNAME", "$phone": PHONE, "plan": "gold_plan",
                      "$initial_gclid": "CANARYGCLID"}, "$ip": IP}

AMP_EVENT = {"user_id": "CANARYUID", "device_id": "CANARYDID", "session_id": 1700000000000, "event_type": "page_view",
             "time": 1700000000123, "ip": IP, "platform": "Web", "os_name": "Chrome", "language": "ja-JP",
             "insert_id": "i1", "library": "amplitude-ts/2.0.0", "user_agent": UA,
             "event_properties": {"plan": "gold_plan", "email": EMAIL, "[Amplitude] Page URL": PAGE,
                                  "step": "checkout_step"},
             "user_properties": {"$set": {"gclid": "CANARYGCLID", "initial_fbclid": "CANARYFBCLID",
                                           "email": EMAIL, "plan": "gold_plan"},
                                 "$setOnce": {"initial_referrer": REF}}}

PH_EVENT = {"event": "page_view", "properties": {
    "distinct_id": "CANARYCID", "$device_id": "CANARYDID", "$session_id": "CANARYSID", "$window_id": "CANARYSID-w",
    "$current_url": PAGE, "$referrer": REF, "$host": "shop.example", "$pathname": "/item", "$ip": IP,
    "$raw_user_agent": UA, "token": "phc_123", "$lib": "web", "$screen_height": 1080, "$browser": "Chrome",
    "plan": "gold_plan", "email": EMAIL, "gclid": "CANARYGCLID", "step": "checkout_step",
    "$set": {"email": EMAIL, "name": "CANARYNAME"}, "$set_once": {"$initial_gclid": "CANARYGCLID",
                                                                  "$initial_referrer": REF}},
    "timestamp": "2026-11-22T00:00:00.000Z", "uuid": "0190-uuid"}

META_HIT = [("id", "123456789"), ("ev", "page_view"), ("dl", PAGE), ("rl", REF), ("if", "false"),
            ("ts", "1700000000123"), ("sw", "1920"), ("sh", "1080"), ("v", "2.9.140"), ("r", "stable"),
            ("fbp", "fb.1.1700000000.CANARYCID"), ("fbc", "fb.1.1700000000.CANARYFBCLID"),
            ("ud[em]", "CANARYHASHEDEMAIL"), ("ud[ph]", "CANARYPHONEHASH"), ("ud[fn]", "CANARYNAME"),
            ("ud[external_id]", "CANARYUID"), ("external_id", "CANARYUID"), ("cd[plan]", "gold_plan"),
            ("cd[email]", EMAIL), ("cd[step]", "checkout_step"), ("it", "1700000000000"), ("coo", "false")]

ADOBE_HIT = [("AQB", "1"), ("ndh", "1"), ("pf", "1"), ("t", "22/10/2026 10:0:0 0 -540"),
             ("mid", "12345678901234567890123456789012345678"),
             ("vid", "CANARYCID"), ("aid", "CANARYCID-aid"), ("pageName", "page_view"), ("g", PAGE), ("r", REF),
             ("cc", "JPY"), ("events", "event1"), ("c1", "gold_plan"), ("v1", EMAIL), ("v2", f"member {EMAIL}"),
             ("v3", "checkout_step"), ("s", "1920x1080"), ("c", "24"), ("j", "1.6"), ("bw", "1200"), ("bh", "800"),
             ("ipaddress", IP), ("AQE", "1")]
ADOBE_EE = {"events": [{"xdm": {
    "identityMap": {"ECID": [{"id": "CANARYECID00000000000000000000000000", "authenticatedState": "ambiguous",
                              "primary": True}],
                    "Email": [{"id": EMAIL, "authenticatedState": "authenticated"}],
                    "CRMID": [{"id": "CANARYUID", "authenticatedState": "authenticated"}]},
    "web": {"webPageDetails": {"URL": PAGE, "name": "page_view"}, "webReferrer": {"URL": REF}},
    "device": {"screenHeight": 1080, "screenWidth": 1920}, "eventType": "web.webpagedetails.pageViews",
    "timestamp": "2026-11-22T00:00:00.000Z", "_acme": {"plan": "gold_plan", "email": EMAIL}},
    "data": {"step": "checkout_step", "phone": PHONE}}],
    "meta": {"state": {"domain": "shop.example", "cookiesEnabled": True,
                       "entries": [{"key": "kndctr_ORG_AdobeOrg_identity", "value": "CANARYECID-cookie"}]}},
    "query": {"identity": {"fetch": ["ECID"]}}}

PLAUSIBLE = {"n": "page_view", "u": PAGE, "d": "shop.example", "r": REF, "w": 1280,
             "p": {"plan": "gold_plan", "email": EMAIL, "step": "checkout_step"}}


def gz(obj) -> bytes:
    return gzip.compress(json.dumps(obj).encode())


CASES: list[Case] = [
    get("ga4", "get", "/g/collect", GA4_HIT),
    post("ga4", "post-lines", "/g/collect", "\r\n".join(q(GA4_HIT[6:]) for _ in range(3)), "text/plain",
         query=q(GA4_HIT[:6] + [("cid", "CANARYCID.1")])),
    post("ga4", "mp", "/mp/collect", GA4_MP, query="measurement_id=G-TEST123&api_secret=sec"),
    get("universal_analytics", "get", "/collect", UA_HIT, keep=("page_view", "checkout_step", "gold_plan")),
    post("universal_analytics", "batch", "/batch", "\n".join(q(UA_HIT) for _ in range(2)), "text/plain"),
    post("universal_analytics", "j-collect", "/j/collect", q(UA_HIT), "application/x-www-form-urlencoded"),
    get("matomo", "get", "/matomo.php", MATOMO_HIT),
    post("matomo", "post-form", "/piwik.php", q(MATOMO_HIT), "application/x-www-form-urlencoded; charset=UTF-8"),
    post("matomo", "bulk", "/matomo.php", {"requests": ["?" + q(MATOMO_HIT), "?" + q(MATOMO_HIT[:8])]}),
    post("snowplow", "tp2", "/com.snowplowanalytics.snowplow/tp2", SP_PAYLOAD,
         "application/json; charset=UTF-8"),
    get("snowplow", "get-i", "/i", list(SP_EVENT.items())),
    post("segment", "track-text-plain", "/v1/t", SEG_TRACK, "text/plain"),
    post("segment", "identify", "/v1/i", SEG_IDENTIFY, keep=("gold_plan",)),
    post("segment", "batch", "/v1/batch", {"batch": [SEG_TRACK, SEG_IDENTIFY], "writeKey": "wk"}),
    get("mixpanel", "get-base64", "/track", [("data", b64(MP_EVENT)), ("ip", "1"), ("_", "1700000000")]),
    post("mixpanel", "post-base64-list", "/track/", q([("data", b64([MP_EVENT, MP_EVENT]))]),
         "application/x-www-form-urlencoded", query="ip=1&verbose=1"),
    post("mixpanel", "post-json-form", "/track/", q([("data", json.dumps([MP_EVENT]))]),
         "application/x-www-form-urlencoded", query="ip=1"),
    post("mixpanel", "engage", "/engage/", q([("data", b64(MP_ENGAGE))]), "application/x-www-form-urlencoded",
         keep=("gold_plan",)),
    post("amplitude", "httpapi", "/2/httpapi", {"api_key": "k123", "events": [AMP_EVENT, AMP_EVENT]}),
    post("amplitude", "batch", "/batch", {"api_key": "k123", "events": [AMP_EVENT]}),
    post("amplitude", "legacy-form", "/", "", "application/x-www-form-urlencoded"),  # replaced below
    post("posthog", "json", "/e/", PH_EVENT, "application/json"),
    post("posthog", "gzip-js", "/e/", gz([PH_EVENT, PH_EVENT]), "text/plain", query="compression=gzip-js&ver=1.200.0"),
    post("posthog", "base64-form", "/i/v0/e/", q([("data", b64(PH_EVENT))]), "application/x-www-form-urlencoded",
         query="compression=base64"),
    post("posthog", "batch", "/batch/", {"api_key": "phc_123", "batch": [PH_EVENT]}),
    get("meta_pixel", "get", "/tr", META_HIT, keep=("page_view", "gold_plan", "checkout_step")),
    post("meta_pixel", "post-form", "/tr/", q(META_HIT), "application/x-www-form-urlencoded",
         keep=("page_view", "gold_plan", "checkout_step")),
    get("adobe", "b-ss-get", "/b/ss/acmeprod/1/JS-2.22.0/s12345", ADOBE_HIT),
    post("adobe", "b-ss-post", "/b/ss/acmeprod/0/JS-2.22.0/s12346", q(ADOBE_HIT), "application/x-www-form-urlencoded"),
    post("adobe", "web-sdk", "/ee/v1/interact", ADOBE_EE, "text/plain", query="configId=abc&requestId=r1"),
    post("plausible", "event", "/api/event", PLAUSIBLE, "text/plain"),
    post("plausible", "event-props-string", "/api/event", dict(PLAUSIBLE, p=json.dumps(PLAUSIBLE["p"])), "text/plain"),
    post("ga4", "post-gzip-no-header", "/g/collect", gzip.compress(q(GA4_HIT[6:]).encode()), "text/plain",
         query=q(GA4_HIT[:6])),
    post("segment", "gzip-content-encoding", "/v1/batch", gz({"batch": [SEG_TRACK]}), "application/json",
         encoding="gzip"),
]


def _amplitude_legacy() -> Case:
    import hashlib

    e = json.dumps([AMP_EVENT])
    form = {"client": "k123", "e": e, "v": "2", "upload_time": "1700000000123"}
    form["checksum"] = hashlib.md5(("2" + "k123" + e + "1700000000123").encode()).hexdigest()
    return post("amplitude", "legacy-form", "/batch", q(list(form.items())), "application/x-www-form-urlencoded")


CASES[[c.name for c in CASES].index("legacy-form")] = _amplitude_legacy()
