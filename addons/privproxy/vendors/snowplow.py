"""[vendors.snowplow] Snowplow: `POST /com.snowplowanalytics.snowplow/tp2` (payload_data JSON), `GET /i` and the
tp1 form; self-describing contexts in `co`/`cx` and events in `ue_pr`/`ue_px` (base64, URL-safe, unpadded).
The collector's `sp` cookie is the network user id.

Field names: docs.snowplow.io "Snowplow Tracker Protocol".
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, Classifier, Decoded, Doc, Limits, Nested, Params, by_name, dumps, loads,
                                    open_body, params_decoded, require)

name = "snowplow"
title = "Snowplow"
paths = ("/com.snowplowanalytics.snowplow/tp2", "/com.snowplowanalytics.snowplow/tp1", "/i")
cookies = ("sp", "_sp_id*", "_sp_ses*")

# Fields inside self-describing JSON (contexts and unstructured events). Snowplow's own schemas name their
# identifiers (client_session: userId, sessionId; web_page: id; mobile_context: advertising ids).
_SD_FIELDS = {
    "userId": "client_id", "sessionId": "session_id", "previousSessionId": "session_id", "firstEventId": "plain",
    "domain_userid": "client_id", "domainUserId": "client_id", "network_userid": "client_id",
    "user_id": "user_id", "userid": "user_id", "appleIdfa": "device_id", "appleIdfv": "device_id",
    "androidIdfa": "device_id", "openIdfa": "device_id", "deviceId": "device_id", "ipAddress": "ip",
    "useragent": "user_agent", "userAgent": "user_agent", "pageUrl": "url", "referrer": "url",
    "pageReferrer": "url", "targetUrl": "url", "url": "url", "schema": "plain", "id": "plain",
    "sessionIndex": "plain", "storageMechanism": "plain", "eventIndex": "plain", "firstEventTimestamp": "plain",
}


def sd_classify(path: tuple[str, ...]) -> str | None:
    """Self-describing JSON: {"schema": ..., "data": ...} envelopes to any depth; data fields by name."""
    if not path:
        return None
    last = path[-1]
    if last in ("schema",):
        return "plain"
    if last == "data":
        return None  # an envelope: walk into it
    return _SD_FIELDS.get(last, "props")


SD = Nested("json", sd_classify)
SD64 = Nested("b64json", sd_classify)
EVENT: Classifier = by_name({
    "duid": "client_id", "nuid": "client_id", "tnuid": "client_id", "uid": "user_id", "sid": "session_id",
    "vid": "plain", "ip": "ip", "ua": "user_agent", "fp": "fingerprint", "mac": "device_id",
    "url": "url", "refr": "url", "se_la": "keep", "tna": "keep", "aid": "keep", "p": "plain", "tv": "plain",
    "e": "plain", "eid": "plain", "dtm": "plain", "stm": "plain", "ttm": "plain", "tz": "keep", "lang": "keep",
    "cs": "plain", "res": "device", "vp": "device", "ds": "device", "cd": "plain", "cookie": "plain",
    "f_pdf": "plain", "f_qt": "plain", "f_realp": "plain", "f_wma": "plain", "f_dir": "plain", "f_fla": "plain",
    "f_java": "plain", "f_gears": "plain", "f_ag": "plain", "page": "keep", "se_ca": "keep", "se_ac": "keep",
    "se_pr": "keep", "se_va": "plain", "tr_id": "keep", "tr_af": "keep", "tr_tt": "plain", "tr_tx": "plain",
    "tr_sh": "plain", "tr_ci": "keep", "tr_st": "keep", "tr_co": "keep", "tr_cu": "keep", "ti_id": "keep",
    "ti_sk": "keep", "ti_nm": "keep", "ti_ca": "keep", "ti_pr": "plain", "ti_qu": "plain", "ti_cu": "keep",
    "pp_mix": "plain", "pp_max": "plain", "pp_miy": "plain", "pp_may": "plain", "dtm_": "plain",
    "co": SD, "cx": SD64, "ue_pr": SD, "ue_px": SD64,
})


def payload_classify(path: tuple[str, ...]) -> str | Nested | None:
    if path == ("schema",):
        return "plain"
    if len(path) == 2 and path[0] == "data":
        return EVENT(path[1:])
    return None


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    if beacon.method.upper() == "GET" or not beacon.body:
        return params_decoded(beacon, EVENT, limits)
    body = open_body(beacon, limits)
    data = loads(body.data, limits)
    require(data, ("schema",), "a Snowplow payload_data")
    query = Params.parse(beacon.query)
    return Decoded([Doc(query, EVENT), Doc(data, payload_classify)],
                   lambda: (query.encode(), body.wrap(dumps(data))))
