"""Mixed traffic for the proxy benchmark: pages with tracking cookies and click ids, and beacons of every vendor
in their common transports (GET query, POST form, POST JSON, base64, batch). Identifiers are synthetic."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 "
      "Safari/537.36")
COOKIES = ("_ga=GA1.1.918273645.1700000000; _ga_ABC123=GS1.1.1700000001.1.0.1700000001.0.0.0; "
           "_fbp=fb.1.1700000000.5647382910; session=site-session-7f3a; ajs_anonymous_id=4c1e2d3f-5a6b")


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    beacon: bool = False


# The events' time: each visitor's events get their own (SDKs stamp every event), so a memo of texts that come
# back in every beacon (event names, titles: privproxy.detectors.Settings.hits) cannot keep them either.
EVENT_TIME = "2026-11-23T00:00:00Z"


def _b64(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def beacons() -> list[Req]:
    js = {"Content-Type": "application/json"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    seg = {"anonymousId": "4c1e2d3f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "userId": "member-4711", "event": "Order Completed",
           "properties": {"revenue": 42.5, "email": "jane@example.com"},
           "context": {"ip": "198.51.100.23", "page": {"url": "https://shop.example/cart?gclid=abc"}},
           "messageId": "m-1", "timestamp": EVENT_TIME, "type": "track"}
    amp = {"api_key": "k", "events": [{"user_id": "member-4711", "device_id": "d-123456", "event_type": "view",
                                       "ip": "198.51.100.23", "event_properties": {"page": "/p?email=a@b.co"}}]}
    ph = {"api_key": "phc_x", "batch": [{"event": "$pageview", "distinct_id": "0190aa-bb-cc",
                                         "properties": {"$current_url": "https://shop.example/?fbclid=IwAR1",
                                                        "$ip": "198.51.100.23", "$session_id": "s-1"}}]}
    return [
        Req("GET", "/g/collect?v=2&tid=G-ABC123&cid=918273645.1700000000&sid=1700000001&uid=member-4711"
                   "&en=page_view&dl=https%3A%2F%2Fshop.example%2Fitem%3Fgclid%3DEAIa&dr=&sr=1920x1080", beacon=True),
        Req("POST", "/g/collect?v=2&tid=G-ABC123&cid=918273645.1700000000&sid=1700000001", form,
            "en=scroll&epn.percent=90\nen=click&ep.link_url=https%3A%2F%2Fx.example%2F%3Femail%3Dj%40x.co", True),
        Req("POST", "/mp/collect?measurement_id=G-ABC123&api_secret=s", js,
            json.dumps({"client_id": "918273645.1700000000", "user_id": "member-4711",
                        "events": [{"name": "purchase", "params": {"value": 42}}]}), True),
        Req("GET", "/collect?v=1&tid=UA-1-1&cid=918273645.1700000000&t=pageview&dp=%2Fitem&uip=198.51.100.23",
            beacon=True),
        Req("GET", "/matomo.php?idsite=1&rec=1&_id=0123456789abcdef&uid=member-4711&url=https%3A%2F%2Fshop.example"
                   "%2F%3Femail%3Dj%40x.co&res=1920x1080&cip=198.51.100.23", beacon=True),
        Req("POST", "/com.snowplowanalytics.snowplow/tp2", js,
            json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                        "data": [{"e": "pv", "url": "https://shop.example/?msclkid=x1", "duid": "d-1", "sid": "s-1",
                                  "uid": "member-4711", "ip": "198.51.100.23", "aid": "shop", "p": "web"}]}), True),
        Req("POST", "/v1/t", js, json.dumps(seg), True),
        Req("POST", "/v1/batch", js, json.dumps({"batch": [seg, {**seg, "type": "page", "name": "Home"}]}), True),
        Req("GET", "/track?data=" + _b64({"event": "view", "properties": {
            "distinct_id": "member-4711", "token": "t", "$email": "jane@example.com", "ip": "198.51.100.23"}}),
            beacon=True),
        Req("POST", "/2/httpapi", js, json.dumps(amp), True),
        Req("POST", "/batch/", js, json.dumps(ph), True),
        Req("GET", "/tr?id=1234567890&ev=PageView&dl=https%3A%2F%2Fshop.example%2F%3Ffbclid%3DIwAR2&fbp=fb.1.1700000000"
                   ".5647382910&ud[em]=5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", beacon=True),
        Req("GET", "/b/ss/rsid1/1/JS-2.22.0/s1234?AQB=1&pageName=home&g=https%3A%2F%2Fshop.example%2F%3Fgclid%3Dz"
                   "&mid=12345678901234567890&vid=member-4711&AQE=1", beacon=True),
        Req("POST", "/api/event", js, json.dumps({"n": "pageview", "u": "https://shop.example/?email=j%40x.co",
                                                   "d": "shop.example", "r": None}), True),
    ]


def pages() -> list[Req]:
    return [
        Req("GET", "/"),
        Req("GET", "/products?q=watch&page=2&gclid=EAIaIQobChMI-click"),
        Req("GET", "/products/item-17"),
        Req("GET", "/newsletter?email=jane.doe%40example.com&utm_source=mail"),
        Req("GET", "/static/app.js"),
        Req("GET", "/health/consultation?doctor=smith"),
    ]


# Synthetic identifiers of the base traffic; each visitor gets its own values in their place, so nothing that
# depends on a visitor's identifiers can be served from a cache in the benchmark.
VISITOR_IDS = ("918273645", "1700000001", "member-4711", "4c1e2d3f-5a6b", "5647382910", "0123456789abcdef",
               "d-123456", "0190aa-bb-cc", "12345678901234567890")


def visitor(text: str, n: int) -> str:
    for i, ident in enumerate(VISITOR_IDS):
        text = text.replace(ident, (f"{n:0{len(ident)}d}" if ident.isdigit() else f"{ident}-{n}-{i}")[-len(ident) - 8:])
    return text.replace(EVENT_TIME, f"2026-11-23T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z")


def mixed(visitors: int = 40) -> list[Req]:
    """About two pages per beacon, as a site with a tag manager produces, for `visitors` distinct visitors."""
    base: list[Req] = []
    ps, bs = pages(), beacons()
    for i, b in enumerate(bs):
        base += [ps[(2 * i) % len(ps)], ps[(2 * i + 1) % len(ps)], b]
    common = {"User-Agent": UA, "Cookie": COOKIES, "Referer": "https://shop.example/?email=jane%40example.com"}
    out = []
    for n in range(visitors):
        for r in base:
            headers = {k: visitor(v, n) for k, v in {**common, **r.headers}.items()}
            body = visitor(r.body, n)
            if body and "Content-Length" in headers:
                headers["Content-Length"] = str(len(body.encode()))
            out.append(Req(r.method, visitor(r.path, n), headers, body, r.beacon))
    return out
