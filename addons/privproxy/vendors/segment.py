"""[vendors.segment] Segment (analytics.js / analytics-next and the HTTP Tracking API): `/v1/t` `/v1/p`
`/v1/i` `/v1/g` `/v1/a` `/v1/s` and `/v1/batch` (also the long names `/v1/track`...). JSON, often sent as
`text/plain` by the browser SDK to avoid a CORS preflight.

Spec: segment.com/docs/connections/spec/common (userId, anonymousId, context, traits).
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, Decoded, Doc, Limits, Params, by_name, dumps, is_click_id, loads,
                                    open_body, require)

name = "segment"
title = "Segment"
paths = ("/v1/t", "/v1/p", "/v1/i", "/v1/g", "/v1/a", "/v1/s", "/v1/batch", "/v1/track", "/v1/page",
         "/v1/identify", "/v1/group", "/v1/alias", "/v1/screen", "/v1/import")
cookies = ()  # the collector reads no cookie: ids travel in the body

_MESSAGE = {
    "userId": "user_id", "anonymousId": "client_id", "previousId": "client_id", "groupId": "keep",
    "type": "plain", "event": "keep", "name": "keep", "category": "keep",
    # analytics-next and analytics-node draw message ids and the anonymousId from one pool of random bytes
    # (@lukeed/uuid, shifted by one byte per id): `ajs-next-<time>-<uuid>` carries 14 of the anonymousId's 16
    # bytes when both come from one page load (tests/unit/vendors/recordings). A pseudonym keeps it unique
    # and stable for Segment's deduplication.
    "messageId": "client_id",
    "timestamp": "plain", "sentAt": "plain", "originalTimestamp": "plain", "receivedAt": "plain",
    "writeKey": "plain", "integrations": "consent", "properties": "props", "traits": "props",
    "version": "plain", "_metadata": "plain", "channel": "plain",
}
_CONTEXT = {
    "ip": "ip", "userAgent": "user_agent", "userAgentData": "fingerprint", "traits": "props",
    "locale": "keep", "timezone": "keep", "library": "plain", "active": "plain", "instanceId": "client_id",
    "sessionId": "session_id", "sessionStart": "plain", "groupId": "keep", "consent": "consent",
    "protocols": "plain", "app": "keep", "os": "keep", "network": "keep", "screen": "device", "channel": "plain",
    "externalIds": "keep",
}
# context.externalIds: [{"id", "type", "collection", "encoding"}]: the ids the site knows the user by in other
# systems (an email, a CRM id, a mobile advertising id). segment.com/docs/connections/spec/common#context
_PAGE = {"url": "url", "referrer": "url", "path": "keep", "search": "url", "title": "keep", "hash": "url",
         "initial_referrer": "url", "initial_referring_domain": "keep", "referring_domain": "keep"}
_EXTERNAL_ID = {"id": "user_id", "type": "plain", "collection": "plain", "encoding": "plain"}
_DEVICE = {"id": "device_id", "advertisingId": "device_id", "adTrackingEnabled": "consent", "token": "device_id",
           "manufacturer": "keep", "model": "fingerprint", "name": "fingerprint", "type": "keep"}


def message_classify(path: tuple[str, ...]) -> str | None:
    if not path:
        return None
    top = path[0]
    if len(path) == 1:
        return _MESSAGE.get(top)
    if top in ("properties", "traits"):
        if path[-1] in ("url", "referrer", "search"):
            return "url"
        return "props"
    if top == "context":
        sub = path[1]
        if len(path) == 2:
            return _CONTEXT.get(sub)
        if sub == "page":
            return _PAGE.get(path[2]) if len(path) == 3 else None
        if sub == "device":
            return _DEVICE.get(path[2]) if len(path) == 3 else None
        if sub == "externalIds":
            return _EXTERNAL_ID.get(path[2]) if len(path) == 3 else None
        if sub == "campaign":
            return "click_id" if is_click_id(path[-1]) else "keep"
        if sub == "traits":
            return "props"
        if sub in ("library", "os", "app", "network", "protocols", "screen", "userAgentData"):
            return _CONTEXT.get(sub)
        if sub == "consent":
            return "consent"
    return None


def classify(path: tuple[str, ...]) -> str | None:
    """A single call, or a batch: `{"batch": [call, ...], "sentAt": ..., "writeKey": ...}`."""
    if path and path[0] == "batch":
        return message_classify(path[1:]) if len(path) > 1 else None
    return message_classify(path)


def refused(message: object) -> bool:
    """Segment Consent Management stamps every call with `context.consent.categoryPreferences`
    ({"Analytics": true, "Advertising": false, ...}); category names are the site's own, so any category the
    visitor refused counts as a refusal to be identified."""
    if not isinstance(message, dict):
        return False
    context = message.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    return isinstance(prefs, dict) and any(v is False or v == "false" for v in prefs.values())


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)
    body = open_body(beacon, limits)
    data = loads(body.data, limits)
    messages = data.get("batch") if isinstance(data, dict) and isinstance(data.get("batch"), list) else [data]
    require(messages, ("userId", "anonymousId", "type"), "a Segment call or batch")  # every call names a user
    return Decoded([Doc(query, by_name({})), Doc(data, classify)], lambda: (query.encode(), body.wrap(dumps(data))),
                   denied=any(refused(m) for m in messages))
