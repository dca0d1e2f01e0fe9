"""[vendors.matomo] Matomo (Piwik): `/matomo.php` and `/piwik.php`, GET or POST form, and bulk tracking
(`{"requests": ["?idsite=1&...", ...]}` JSON).

Parameter names: developer.matomo.org/api-reference/tracking-api.
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, CodecError, Decoded, Doc, Limits, Nested, Params, by_name, dumps,
                                    is_form, loads, open_body, text_of)

name = "matomo"
title = "Matomo"
paths = ("/matomo.php", "/piwik.php", "*/matomo.php", "*/piwik.php")
cookies = ("_pk_id*", "_pk_ses*", "_pk_ref*", "_pk_cvar*", "_pk_hsr*", "MATOMO_SESSID", "mtm_*")

_CVAR = by_name({}, prefixes=(("", "props"),))  # {"1": ["name", "value"], ...}: every pair is custom
HIT = by_name({
    "_id": "client_id", "cid": "client_id", "uid": "user_id", "_idn": "plain", "_idts": "plain",
    "_idvc": "plain", "_viewts": "plain", "_refts": "plain", "_ects": "plain", "pv_id": "plain",
    "cip": "ip", "ua": "user_agent", "uadata": "fingerprint", "lang": "keep",
    "url": "url", "urlref": "url", "_ref": "url", "link": "url", "download": "url",
    "_rcn": "keep", "_rck": "keep", "mtm_cid": "keep", "_gclid": "click_id", "gclid": "click_id",
    "res": "device", "_cvar": Nested("json", _CVAR), "cvar": Nested("json", _CVAR),
    "idsite": "plain", "rec": "plain", "apiv": "plain", "r": "plain", "rand": "plain", "h": "plain",
    "m": "plain", "s": "plain", "cdt": "plain", "send_image": "plain", "ping": "plain", "bots": "plain",
    "new_visit": "plain", "action_name": "keep", "e_c": "keep", "e_a": "keep", "e_n": "keep", "e_v": "plain",
    "c_n": "keep", "c_p": "keep", "c_t": "url", "c_i": "keep", "search": "keep", "search_cat": "keep",
    "search_count": "plain", "idgoal": "plain", "revenue": "plain", "ec_id": "keep", "ec_items": "keep",
    "ec_st": "plain", "ec_tx": "plain", "ec_sh": "plain", "ec_dt": "plain", "cs": "plain", "ca": "plain",
    "pf_net": "plain", "pf_srv": "plain", "pf_tfr": "plain", "pf_dm1": "plain", "pf_dm2": "plain",
    "pf_onl": "plain", "pv_ping": "plain", "fa_vid": "keep", "fa_fv": "plain", "fa_st": "plain",
    "token_auth": "plain", "queuedtracking": "plain", "cookie": "plain", "fla": "plain", "java": "plain",
    "dir": "plain", "qt": "plain", "realp": "plain", "pdf": "plain", "wma": "plain", "ag": "plain",
    "gears": "plain", "consent": "consent", "bw_bytes": "plain", "ma_id": "keep", "ma_ti": "keep",
}, prefixes=(("dimension", "props"), ("_pk_", "client_id"), ("pf_", "plain"), ("ma_", "keep")))
_BULK = by_name({"requests": Nested("query", HIT), "token_auth": "plain"})


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)
    if not beacon.body:
        return Decoded([Doc(query, HIT)], lambda: (query.encode(), beacon.body))
    body = open_body(beacon, limits)
    text = text_of(body.data)
    if text.lstrip().startswith("{"):
        data = loads(body.data, limits)
        return Decoded([Doc(query, HIT), Doc(data, _BULK)], lambda: (query.encode(), body.wrap(dumps(data))))
    if not is_form(beacon) and "=" not in text:
        raise CodecError("unsupported_format", "neither a form nor bulk JSON")
    form = Params.parse(text)
    return Decoded([Doc(query, HIT), Doc(form, HIT)],
                   lambda: (query.encode(), body.wrap(form.encode().encode())))
