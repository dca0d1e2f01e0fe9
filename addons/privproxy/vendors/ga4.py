"""[vendors.ga4] Google Analytics 4: gtag.js `/g/collect` (GET, and POST with one hit per body line sharing the
URL's parameters) and the Measurement Protocol `/mp/collect` (JSON).

Parameter names follow gtag.js as it sends them (reference: developers.google.com/analytics, and what the
current gtag.js puts on the wire); `ep.`/`epn.` are event parameters, `up.`/`upn.` user properties.
"""

from __future__ import annotations

import re

from privproxy.consent.signals import tcf_refuses
from privproxy.vendors.base import (Beacon, Decoded, Doc, Limits, Params, by_name, dumps, lines_decoded, loads,
                                    open_body, require)

name = "ga4"
title = "Google Analytics 4"
paths = ("/g/collect", "/mp/collect", "/debug/mp/collect")
cookies = ("_ga", "_ga_*", "FPID", "FPLC", "FPAU", "FPGCLAW", "_gcl_au")

HIT = by_name({
    "cid": "client_id", "_fid": "client_id", "uid": "user_id", "sid": "session_id", "ecid": "user_id",
    "_uip": "ip", "uip": "ip", "_ua": "user_agent",
    "em": "contact", "ecsid": "session_id",
    "gclid": "click_id", "dclid": "click_id", "gbraid": "click_id", "wbraid": "click_id", "_gl": "click_id",
    "dl": "url", "dr": "url", "dlp": "url", "su": "url",
    "sr": "device", "vp": "device",
    "uafvl": "fingerprint", "uam": "fingerprint", "uapv": "fingerprint", "uamb": "keep",
    "gcs": "consent", "gcd": "consent", "npa": "consent", "dma": "consent", "dma_cps": "consent",
    "gdpr": "consent", "gdpr_consent": "consent",
    "pscdl": "consent", "gcu": "consent", "gcut": "consent", "are": "consent", "_eu": "plain",
    "v": "plain", "tid": "plain", "gtm": "plain", "_p": "plain", "_gaz": "plain", "tag_exp": "plain",
    "ul": "keep", "uaa": "plain", "uab": "plain", "uap": "keep", "uaw": "plain", "frm": "plain", "pae": "plain",
    "_s": "plain", "sct": "plain", "seg": "plain", "dt": "keep", "en": "keep", "_fv": "plain", "_nsi": "plain",
    "_ss": "plain", "_ee": "plain", "tfd": "plain", "_et": "plain", "_c": "plain", "_z": "plain", "_dbg": "plain",
    "richsstsse": "plain", "ngs": "plain", "_tu": "plain", "cu": "keep", "_r": "plain", "_cs": "plain",
    "ir": "plain", "fp": "plain", "_gsid": "session_id", "_glv": "plain", "ga_cid": "client_id",
}, prefixes=(("ep.", "props"), ("epn.", "props"), ("up.", "props"), ("upn.", "props"), ("pr", "keep")))

# Measurement Protocol JSON (developers.google.com/analytics/devguides/collection/protocol/ga4/reference).
_MP = {
    "client_id": "client_id", "app_instance_id": "device_id", "user_id": "user_id",
    "timestamp_micros": "plain", "non_personalized_ads": "consent", "consent": "consent",
    "user_properties": "props", "user_data": "contact", "ip_override": "ip", "user_agent": "user_agent",
    "user_location": "keep", "device": "keep", "validation_behavior": "plain",
}
_MP_QUERY = by_name({"measurement_id": "plain", "api_secret": "plain", "firebase_app_id": "plain"})
_MP_EVENT = {
    "name": "keep", "session_id": "session_id", "engagement_time_msec": "plain", "page_location": "url",
    "page_referrer": "url", "page_title": "keep", "gclid": "click_id", "dclid": "click_id",
    "transaction_id": "keep", "currency": "keep", "value": "plain",
}


def mp_classify(path: tuple[str, ...]) -> str | None:
    if not path:
        return None
    if len(path) == 1:
        return _MP.get(path[0])
    top = path[0]
    if top == "events":
        if len(path) == 2:
            return "props" if path[1] == "params" else "keep" if path[1] == "name" else None
        if path[1] == "params":
            return _MP_EVENT.get(path[2], "props") if len(path) == 3 else "props"
    if top == "user_properties":
        return "props"
    if top == "device" and path[-1] in ("screen_resolution",):
        return "device"
    if top in ("device", "user_location", "consent"):
        return "consent" if top == "consent" else "keep"
    return None


_GCD_DENIED = frozenset("pqmu")  # denied by default, in both, by update, or granted then updated to denied
_GCS_DENIED = re.compile(r"G1[01]0.*")
_LETTER = re.compile(r"[a-z]")


def denied(p: Params) -> bool:
    """Google Consent Mode on the hit: gcs `G1<ad><analytics>` and gcd read letter by letter (any length)."""
    gcs = p.get("gcs") or ""
    if _GCS_DENIED.fullmatch(gcs):
        return True
    letters = _LETTER.findall((p.get("gcd") or "").lower())
    if len(letters) >= 2 and letters[1] in _GCD_DENIED:  # 2nd signal: analytics_storage
        return True
    if p.get("gdpr") == "1" and tcf_refuses(p.get("gdpr_consent") or ""):  # a TCF string on the hit itself
        return True
    return p.get("npa") == "1"


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    if beacon.path.endswith("/mp/collect"):
        return _decode_mp(beacon, limits)
    decoded = lines_decoded(beacon, limits, HIT)
    decoded.denied = any(denied(doc.data) for doc in decoded.docs)
    return decoded


def _decode_mp(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)  # measurement_id / firebase_app_id and api_secret: not personal
    body = open_body(beacon, limits)
    data = loads(body.data, limits)
    require(data, ("events",), "a Measurement Protocol request")
    consent = data.get("consent") if isinstance(data, dict) else None
    is_denied = isinstance(consent, dict) and "DENIED" in {str(v).upper() for v in consent.values()}
    if isinstance(data, dict) and data.get("non_personalized_ads") is True:
        is_denied = True
    return Decoded([Doc(query, _MP_QUERY), Doc(data, mp_classify)], lambda: (query.encode(), body.wrap(dumps(data))),
                   denied=is_denied)
