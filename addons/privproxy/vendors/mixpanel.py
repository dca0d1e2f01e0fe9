"""[vendors.mixpanel] Mixpanel: `/track`, `/engage`, `/groups` (and `/import`, `/decide`-free paths), GET or POST,
the payload in `data=` as base64 JSON (older mixpanel-js, api_payload_format "base64") or plain JSON
(newer mixpanel-js), or a raw JSON body (HTTP API).

Property names: docs.mixpanel.com/docs/data-structure/property-reference/default-properties.
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, CodecError, Decoded, Doc, Limits, Nested, Params, by_name, dumps, loads,
                                    open_body, require, text_of)

name = "mixpanel"
title = "Mixpanel"
paths = ("/track", "/track/", "/engage", "/engage/", "/groups", "/groups/", "/import", "/import/")
cookies = ()  # mixpanel-js keeps its ids in a first-party mp_* cookie the collector never reads

_PROPS = {
    "distinct_id": "client_id", "$distinct_id": "client_id", "$device_id": "device_id", "$user_id": "user_id",
    "$anon_id": "client_id", "$identified_id": "user_id", "$distinct_id_before_identity": "client_id",
    # mixpanel-browser's $identify: the anonymous id it merges, `$device:<device id>` (Scrubber.shaped
    # keeps that form, with the pseudonym `$device_id` gets); `$user_id` on every event after identify.
    "$anon_distinct_id": "client_id",
    "token": "plain", "$token": "plain", "time": "plain", "$time": "plain", "$insert_id": "plain",
    "$current_url": "url", "$referrer": "url", "$initial_referrer": "url", "current_url_path": "keep",
    "$referring_domain": "keep", "$initial_referring_domain": "keep", "current_domain": "keep",
    "current_page_title": "keep", "current_url_search": "url", "current_url_protocol": "plain",
    "$os": "keep", "$browser": "keep", "$browser_version": "plain", "$device": "keep", "$model": "fingerprint",
    "$screen_height": "device", "$screen_width": "device", "$screen_dpi": "device", "mp_lib": "plain",
    "$lib_version": "plain", "$search_engine": "keep", "mp_keyword": "keep", "mp_sent_by_lib_version": "plain",
    "$had_persisted_distinct_id": "plain", "$duration": "plain", "$ip": "ip", "ip": "ip", "$city": "keep",
    "$region": "keep", "mp_country_code": "keep", "$mp_api_endpoint": "plain", "$mp_api_timestamp_ms": "plain",
    "$group_key": "keep", "$group_id": "keep", "$ignore_time": "plain", "$ignore_alias": "plain",
    "$set": "props", "$set_once": "props", "$add": "props", "$append": "props", "$union": "props",
    "$remove": "props", "$unset": "plain", "$delete": "plain", "$email": "contact", "$phone": "contact",
    "$name": "contact", "$first_name": "contact", "$last_name": "contact", "$avatar": "contact",
    "$opt_out": "consent", "$opt_in": "consent",
}


def event_classify(path: tuple[str, ...]) -> str | Nested | None:
    if not path:
        return None
    if len(path) == 1:
        if path[0] in ("event",):
            return "keep"
        if path[0] == "properties":
            return "props"
        return _PROPS.get(path[0], "props" if path[0].startswith("$") else None)
    if path[0] in ("properties", "$set", "$set_once", "$add", "$append", "$union", "$remove"):
        got = _PROPS.get(path[-1])
        return got if got is not None else "props"
    return None


DATA = by_name({"data": Nested("b64json", event_classify), "ip": "plain", "verbose": "plain", "_": "plain",
                "img": "plain", "callback": "plain", "test": "plain", "strict": "plain", "api_key": "plain"})
DATA_JSON = by_name({"data": Nested("json", event_classify), "ip": "plain", "verbose": "plain", "_": "plain",
                     "img": "plain", "callback": "plain", "test": "plain", "strict": "plain"})


def _classifier_for(p: Params) -> object:
    data = (p.get("data") or "").lstrip()
    return DATA_JSON if data.startswith(("{", "[")) else DATA


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)
    docs = [Doc(query, _classifier_for(query))]  # type: ignore[arg-type]
    if not beacon.body:
        return Decoded(docs, lambda: (query.encode(), beacon.body), denied=False)
    body = open_body(beacon, limits)
    text = text_of(body.data)
    if body.json:
        data = loads(body.data, limits)
        require(data, ("event", "$distinct_id", "$token", "$group_key"), "a Mixpanel event or profile update")
        docs.append(Doc(data, event_classify))
        return Decoded(docs, lambda: (query.encode(), body.wrap(dumps(data))))
    if "=" not in text:
        raise CodecError("unsupported_format", "neither data= form nor JSON")
    form = Params.parse(text)
    docs.append(Doc(form, _classifier_for(form)))  # type: ignore[arg-type]
    return Decoded(docs, lambda: (query.encode(), body.wrap(form.encode().encode())))
