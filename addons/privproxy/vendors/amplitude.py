"""[vendors.amplitude] Amplitude: HTTP API v2 `/2/httpapi` and `/batch` (JSON `{"api_key", "events": [...]}`),
and the legacy form upload (`client=`, `e=` JSON array, `v`, `upload_time`, `checksum`) that older SDKs send.

Field names: amplitude.com/docs/apis/analytics/http-v2. The legacy form's checksum is
md5(v + client + e + upload_time); it is recomputed when `e` changes, or the collector drops the upload.
"""

from __future__ import annotations

import hashlib

from privproxy.vendors.base import (Beacon, CodecError, Decoded, Doc, Limits, Nested, Params, by_name, dumps, is_form,
                                    is_click_id, loads, open_body, text_of)

name = "amplitude"
title = "Amplitude"
paths = ("/2/httpapi", "/batch", "/2/httpapi/")  # PostHog owns /batch/
cookies = ()

_EVENT = {
    "user_id": "user_id", "device_id": "device_id", "session_id": "session_id", "ip": "ip",
    "idfa": "device_id", "idfv": "device_id", "adid": "device_id", "android_id": "device_id",
    "android_app_set_id": "device_id", "user_agent": "user_agent", "event_type": "keep", "time": "plain",
    "event_id": "plain", "insert_id": "plain", "sequence_number": "plain", "library": "plain",
    "platform": "keep", "os_name": "keep", "os_version": "plain", "device_brand": "keep",
    "device_manufacturer": "keep", "device_model": "fingerprint", "device_type": "keep", "carrier": "keep",
    "country": "keep", "region": "keep", "city": "keep", "dma": "keep", "language": "keep",
    "location_lat": "ip", "location_lng": "ip", "app_version": "plain", "version_name": "plain",
    "price": "plain", "quantity": "plain", "revenue": "plain", "productId": "keep", "revenueType": "keep",
    "event_properties": "props", "user_properties": "props", "groups": "props", "group_properties": "props",
    "plan": "keep", "ingestion_metadata": "plain", "partner_id": "plain", "extra": "props",
}
_ROOT = {"api_key": "plain", "options": "plain", "client_upload_time": "plain"}


def event_classify(path: tuple[str, ...]) -> str | None:
    """An event, at the top of a legacy `e=` array or under `events` in the v2 API."""
    if path and path[0] == "events":
        path = path[1:]
    if not path:
        return None
    if len(path) == 1:
        return _EVENT.get(path[0]) or _ROOT.get(path[0])
    if path[0] in ("event_properties", "user_properties", "group_properties", "groups", "extra"):
        last = path[-1]
        if is_click_id(last):  # the browser SDK copies click ids into user properties ($set.gclid)
            return "click_id"
        if last in ("referrer", "initial_referrer", "[Amplitude] Page URL", "[Amplitude] Page Location",
                    "page_url", "page_location", "url"):
            return "url"
        return "props"
    return None


LEGACY = by_name({"e": Nested("json", event_classify), "client": "plain", "v": "plain", "upload_time": "plain",
                  "checksum": "plain"})


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)
    body = open_body(beacon, limits)
    text = text_of(body.data)
    if not body.json and (is_form(beacon) or text.startswith(("e=", "client=", "v=", "checksum=", "upload_time="))):
        form = Params.parse(text)
        if form.get("e") is None:  # not Amplitude's upload (a UA hit also starts with v=): refuse, never guess
            raise CodecError("unsupported_format", "a form without Amplitude's `e` events field")

        def encode_form() -> tuple[str, bytes]:
            _fix_checksum(form)
            return query.encode(), body.wrap(form.encode().encode())

        return Decoded([Doc(query, LEGACY), Doc(form, LEGACY)], encode_form)
    if not body.json:
        raise CodecError("unsupported_format", "neither JSON nor the legacy form")
    data = loads(body.data, limits)
    # The HTTP V2 and Batch APIs take {"api_key", "events": [...]}: anything else is another vendor's document
    # (a PostHog batch on `/batch`), whose fields this codec would not know.
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise CodecError("bad_structure", "no `events` list")
    return Decoded([Doc(query, by_name({})), Doc(data, event_classify)],
                   lambda: (query.encode(), body.wrap(dumps(data))))


def _fix_checksum(form: Params) -> None:
    v, client, e, t = (form.get(k) for k in ("v", "client", "e", "upload_time"))
    for i, pair in enumerate(form.pairs):
        if pair[1] == "checksum" and None not in (v, client, e, t):
            form.set(i, hashlib.md5(f"{v}{client}{e}{t}".encode()).hexdigest())  # noqa: S324 (the vendor's format)
