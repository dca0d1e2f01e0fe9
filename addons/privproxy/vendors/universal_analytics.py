"""[vendors.universal_analytics] Universal Analytics / Measurement Protocol v1: `/collect`, `/j/collect`,
`/r/collect` (GET or POST form) and `/batch` (up to 20 hits, one per body line).

Parameter names: developers.google.com/analytics/devguides/collection/protocol/v1/parameters.
"""

from __future__ import annotations

from privproxy.vendors.base import Beacon, Decoded, Limits, by_name, lines_decoded

name = "universal_analytics"
title = "Universal Analytics (Measurement Protocol v1)"
paths = ("/collect", "/j/collect", "/r/collect", "/batch")
cookies = ("_ga", "_gid", "_gat*", "_gac_*", "FPID", "FPLC")

HIT = by_name({
    "cid": "client_id", "uid": "user_id", "_gid": "client_id", "uip": "ip", "ua": "user_agent",
    "gclid": "click_id", "dclid": "click_id", "_gl": "click_id",
    "dl": "url", "dr": "url", "linkid": "keep",
    "sr": "device", "vp": "device", "fl": "fingerprint",
    "npa": "consent", "aip": "consent",
    "v": "plain", "tid": "plain", "t": "keep", "_v": "plain", "_s": "plain", "_u": "plain", "_r": "plain",
    "a": "plain", "z": "plain", "jid": "plain", "gjid": "plain", "_gfp": "plain", "gtm": "plain", "ni": "plain",
    "ds": "keep", "qt": "plain", "dh": "keep", "dp": "keep", "dt": "keep", "cd": "keep", "an": "keep",
    "aid": "keep", "av": "keep", "aiid": "keep", "ec": "keep", "ea": "keep", "el": "keep", "ev": "plain",
    "ul": "keep", "de": "plain", "sd": "plain", "je": "plain", "sc": "plain", "ti": "keep", "ta": "keep",
    "tr": "plain", "ts": "plain", "tt": "plain", "in": "keep", "ip": "plain", "iq": "plain", "ic": "keep",
    "iv": "keep", "cu": "keep", "pa": "keep", "utc": "keep", "utv": "keep", "utt": "plain", "utl": "keep",
    "exd": "keep", "exf": "plain", "cn": "keep", "cs": "keep", "cm": "keep", "ck": "keep", "cc": "keep",
    "ci": "keep", "xid": "plain", "xvar": "plain", "sn": "keep", "sa": "keep", "st": "keep",
}, prefixes=(("cd", "props"), ("cm", "plain"), ("pr", "keep"), ("il", "keep"), ("promo", "keep")))


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    decoded = lines_decoded(beacon, limits, HIT)
    decoded.denied = any(doc.data.get("npa") == "1" for doc in decoded.docs)
    return decoded
