"""[vendors.posthog] PostHog: `/e/`, `/i/v0/e/`, `/batch/`, `/capture/`, `/engage/`, `/track/`. posthog-js sends
JSON gzipped (`?compression=gzip-js`, no Content-Encoding header), base64 in a form field
(`compression=base64`, body `data=...`), or plain JSON; a body is one event, a list, or `{"batch": [...]}`.
lz-string (`lz64`, very old SDKs) is not decoded: such beacons are answered without forwarding.

Property names: posthog.com/docs/data/events (default properties) and posthog-js's source.
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, CodecError, Decoded, Doc, Limits, Nested, Params, b64decode, by_name,
                                    dumps, is_click_id, loads, open_body, require, text_of)

name = "posthog"
title = "PostHog"
paths = ("/e/", "/e", "/i/v0/e/", "/i/v0/e", "/batch/", "/capture/", "/capture", "/engage/", "/track/")
cookies = ()  # posthog-js keeps ids in a ph_* cookie the collector does not read

# Autocapture's clicked elements: `$elements` (a list of objects, older SDKs) and `$elements_chain` (posthog-js's
# `tag.class:attr="value"...;...` string). Links, sources and form actions are URLs (the URL rules apply); other
# attribute values, texts and class names go through the detectors.
_ELEMENT = {
    "href": "url", "attr__href": "url", "attr__src": "url", "attr__action": "url", "attr__formaction": "url",
    "attr__poster": "url", "attr__data-href": "url", "attr__data-url": "url",
    "nth-child": "plain", "nth-of-type": "plain", "nth_child": "plain", "nth_of_type": "plain", "order": "plain",
    "tag_name": "plain",
}


def element_classify(path: tuple[str, ...]) -> str:
    return _ELEMENT.get(path[-1], "keep") if path else "keep"


_PROPS: dict[str, str | Nested] = {
    "distinct_id": "client_id", "$device_id": "device_id", "$session_id": "session_id", "$window_id": "session_id",
    "$anon_distinct_id": "client_id", "$user_id": "user_id", "$pageview_id": "plain", "$insert_id": "plain",
    "$current_url": "url", "$referrer": "url", "$initial_referrer": "url", "$initial_current_url": "url",
    "$prev_pageview_pathname": "keep", "$pathname": "keep", "$host": "keep", "$referring_domain": "keep",
    "$initial_referring_domain": "keep", "$ip": "ip", "$raw_user_agent": "user_agent", "token": "plain",
    "$lib": "plain", "$lib_version": "plain", "$browser": "keep", "$browser_version": "plain", "$os": "keep",
    "$os_version": "plain", "$device_type": "keep", "$screen_height": "device", "$screen_width": "device",
    "$viewport_height": "device", "$viewport_width": "device", "$browser_language": "keep", "$timezone": "keep",
    "$time": "plain", "$sent_at": "plain", "$groups": "keep", "$set": "props", "$set_once": "props",
    "$unset": "plain", "$elements": "keep", "$elements_chain": Nested("attrs", element_classify),
    "$event_type": "keep",
    "$is_identified": "plain", "$process_person_profile": "plain", "$configured_session_timeout_ms": "plain",
    "$opt_out": "consent", "$cookieless_mode": "consent", "$geoip_disable": "consent",
    # Seen in posthog-js 1.449 recordings (tests/unit/vendors/recordings/browser-sdks.json): SDK internals and
    # coarse session context, none of them identifying.
    "$timezone_offset": "keep", "$browser_language_prefix": "keep", "$browser_type": "keep",
    "$sdk_dist_channel": "plain", "$initialization_time": "plain", "$sdk_debug_extensions_init_method": "plain",
    "$sdk_debug_extensions_init_time_ms": "plain", "$sdk_debug_retry_queue_size": "plain", "$config_defaults": "plain",
    "$recording_status": "plain", "$lib_custom_api_host": "plain", "$lib_rate_limit_remaining_tokens": "plain",
    "$session_entry_url": "url", "$session_entry_referrer": "url", "$session_entry_referring_domain": "keep",
    "$session_entry_host": "keep", "$session_entry_pathname": "keep", "$initial_host": "keep",
    "$initial_pathname": "keep",
}


def event_classify(path: tuple[str, ...]) -> str | Nested | None:
    if path and path[0] == "batch":
        path = path[1:]
    if not path:
        return None
    if len(path) == 1:
        return {"event": "keep", "properties": "props", "timestamp": "plain", "uuid": "plain", "api_key": "plain",
                "token": "plain", "distinct_id": "client_id", "$set": "props", "$set_once": "props",
                "sent_at": "plain", "type": "plain", "offset": "plain", "historical_migration": "plain",
                "ip": "ip"}.get(path[0])
    if path[0] == "properties" and len(path) > 2 and path[1] == "$elements":
        return element_classify(path[2:])
    if path[0] in ("properties", "$set", "$set_once"):
        if is_click_id(path[-1]):
            return "click_id"
        got = _PROPS.get(path[-1]) if len(path) == 2 or path[1] in ("$set", "$set_once") else None
        return got if got is not None else "props"
    return None


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)
    qclass = by_name({"compression": "plain", "ver": "plain", "_": "plain", "ip": "plain", "retry_count": "plain"})
    compression = (query.get("compression") or "").lower()
    if compression in ("lz64", "lz-string"):
        raise CodecError("unsupported_encoding", "lz-string")
    body = open_body(beacon, limits, gzip_hint=compression == "gzip-js")
    text = text_of(body.data)
    if body.json:
        data = loads(body.data, limits)
        require(data["batch"] if isinstance(data, dict) and isinstance(data.get("batch"), list) else data,
                ("event",), "a PostHog event or batch")
        return Decoded([Doc(query, qclass), Doc(data, event_classify)],
                       lambda: (query.encode(), body.wrap(dumps(data))))
    form = Params.parse(text)
    raw = form.get("data")
    if raw is None:
        raise CodecError("unsupported_format", "no JSON and no data= field")
    encoding = "json" if raw.lstrip().startswith(("{", "[")) else "b64json"
    if encoding == "b64json":
        loads(b64decode(raw)[0], limits)  # undecodable: the whole beacon is refused, not just the field
    else:
        loads(raw, limits)
    classify = by_name({"data": Nested(encoding, event_classify), "compression": "plain", "ver": "plain",
                        "_": "plain", "ip": "plain"})
    return Decoded([Doc(query, qclass), Doc(form, classify)],
                   lambda: (query.encode(), body.wrap(form.encode().encode())))
