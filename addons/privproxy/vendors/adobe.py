"""[vendors.adobe] Adobe Analytics image requests `/b/ss/<report suite>/<version>/<build>/<id>` (GET or POST form)
and the Experience Platform Web SDK (alloy.js) `/ee/...` JSON (`interact`, `collect`; regional prefixes too).

Parameters: experienceleague.adobe.com "Data collection query parameters"; Web SDK: the XDM
`identityMap`, `web.webPageDetails`, and `meta.state.entries` (the kndctr identity cookie sent in the body).
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, Decoded, Doc, Limits, Params, by_name, dumps, loads, open_body,
                                    params_decoded, require)

name = "adobe"
title = "Adobe Analytics / Experience Platform Web SDK"
paths = ("/b/ss/*", "/ee/*")
cookies = ("s_vi", "s_fid", "s_ecid", "AMCV_*", "AMCVS_*", "kndctr_*", "mbox")

HIT = by_name({
    "vid": "client_id", "mid": "client_id", "aid": "client_id", "fid": "client_id", "aamb": "device_id",
    "aamlh": "plain", "mcorgid": "plain", "sdid": "plain", "ipaddress": "ip", "ua": "user_agent",
    "g": "url", "-g": "url", "r": "url", "pev1": "url", "pageURL": "url", "referrer": "url",
    "pageName": "keep", "gn": "keep", "ch": "keep", "server": "keep", "events": "keep", "products": "keep",
    "purchaseID": "keep", "xact": "keep", "cc": "plain", "ce": "plain", "pe": "plain", "pev2": "keep",
    "t": "plain", "ts": "plain", "s": "device", "c": "plain", "j": "plain", "v": "plain", "k": "plain",
    "bw": "device", "bh": "device", "p": "fingerprint", "ndh": "plain", "pf": "plain", "AQB": "plain",
    "AQE": "plain", "vmt": "plain", "vmf": "plain", "cdp": "plain", "ct": "plain", "hp": "plain",
    "cl": "plain", "lrt": "plain", "pccr": "plain", "pageType": "keep", "state": "contact", "zip": "contact",
    "gclid": "click_id", "cid": "client_id", "mcmid": "client_id", "mcaid": "client_id",
}, prefixes=(("c", "props"), ("v", "props"), ("h", "keep"), ("l", "keep"), ("list", "keep")))

_EE_QUERY = by_name({"configId": "plain", "requestId": "plain", "edgeConfigOverrides": "plain"})
_IDENTITY_CLIENT = {"ECID", "CORE", "AAID", "AACUSTOMID", "FPID", "GAID", "IDFA"}


def ee_classify(path: tuple[str, ...]) -> str | None:
    if not path:
        return None
    if "identityMap" in path:
        i = path.index("identityMap")
        rest = path[i + 1:]
        if len(rest) < 2:
            return None
        namespace, fieldname = rest[0], rest[-1]
        if fieldname != "id":
            return "plain"
        if namespace.upper() in _IDENTITY_CLIENT:
            return "client_id"
        if any(w in namespace.lower() for w in ("email", "phone", "mail", "tel")):
            return "contact"
        return "user_id"
    last = path[-1]
    if path[0] == "meta":
        if path[-2:] == ("entries", "value") or last == "value":
            return "client_id"  # the kndctr identity cookie, copied into the body
        return "plain"
    if path[0] == "query":
        return "plain"
    if last == "URL" or last in ("url", "referrer"):
        return "url"
    if "xdm" in path:
        if last in ("screenHeight", "screenWidth", "viewportWidth", "viewportHeight"):
            return "device"
        if last in ("eventType", "timestamp", "name", "siteSection", "server", "type", "localTime",
                    "localTimezoneOffset", "screenOrientation", "trackingCode", "version", "libraryName",
                    "libraryVersion", "environment", "pageViews", "value", "webInteraction", "linkClicks",
                    "acceptLanguage", "userAgentClientHints", "_id", "eventMergeId", "isHomePage"):
            return "keep" if last in ("name", "trackingCode", "siteSection") else "plain"
        if last in ("userAgent",):
            return "user_agent"
        if last.startswith("_") and len(path) > 2:
            return "props"  # the tenant's own XDM fields
        return None
    if "data" in path:
        return "props"
    return None


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    if beacon.path.startswith("/b/ss/"):
        return params_decoded(beacon, HIT, limits)
    query = Params.parse(beacon.query)
    body = open_body(beacon, limits)
    data = loads(body.data, limits)
    require(data, ("events",), "an Adobe Experience Edge request")
    return Decoded([Doc(query, _EE_QUERY), Doc(data, ee_classify)],
                   lambda: (query.encode(), body.wrap(dumps(data))))
