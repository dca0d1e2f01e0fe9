"""[vendors.meta_pixel] Meta (Facebook) Pixel: `/tr` GET (image beacon) and POST form. `ud[...]` carries
advanced-matching user data (SHA-256 of email, phone, names...): hashed is still personal data, so it is
contact data here. `fbp` is the browser id, `fbc` the stored fbclid.

Parameters: developers.facebook.com/docs/meta-pixel (advanced matching) and what fbevents.js sends.
"""

from __future__ import annotations

from privproxy.vendors.base import Beacon, Decoded, Limits, by_name, params_decoded

name = "meta_pixel"
title = "Meta Pixel"
paths = ("/tr", "/tr/")
cookies = ("_fbp", "_fbc")

HIT = by_name({
    "fbp": "client_id", "fbc": "click_id", "external_id": "user_id", "eid": "plain",
    "dl": "url", "rl": "url", "ev": "keep", "id": "plain", "if": "plain", "ts": "plain", "sw": "device",
    "sh": "device", "v": "plain", "r": "plain", "a": "plain", "ec": "plain", "o": "plain", "it": "plain",
    "coo": "consent", "dpo": "consent", "dpoco": "consent", "dpost": "consent", "rqm": "plain",
    "cs_est": "plain", "es": "plain", "tm": "plain", "exp": "plain", "ler": "plain", "cdl": "plain",
    "fbclid": "click_id", "pmd[title]": "keep", "pmd[description]": "keep", "plt": "plain",
    "client_ip_address": "ip", "client_user_agent": "user_agent",
}, prefixes=(("ud[", "contact"), ("udff[", "contact"), ("cd[", "props"), ("sd[", "plain"), ("pmd[", "keep"),
             ("ie[", "plain")))


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    decoded = params_decoded(beacon, HIT, limits)
    decoded.denied = any(doc.data.get("dpo") == "LDU" for doc in decoded.docs)  # Limited Data Use requested
    return decoded
