"""[vendors.plausible] Plausible: `POST /api/event`, JSON (sent as text/plain): `n` name, `u` page URL,
`d` domain, `r` referrer, `w` width, `h` hash mode, `p`/`props` custom properties (an object or a JSON
string), `m`/`meta`, `$` revenue. Plausible stores no identifiers, but the URL and referrer can carry them.

Spec: plausible.io/docs/events-api.
"""

from __future__ import annotations

from privproxy.vendors.base import Beacon, Decoded, Doc, Limits, Params, by_name, dumps, loads, open_body, require

name = "plausible"
title = "Plausible"
paths = ("/api/event",)
cookies = ()

EVENT = by_name({"n": "keep", "name": "keep", "u": "url", "url": "url", "d": "keep", "domain": "keep",
                 "r": "url", "referrer": "url", "w": "device", "screen_width": "device", "h": "plain",
                 "hash_mode": "plain", "i": "plain", "interactive": "plain", "$": "plain", "revenue": "plain",
                 "e": "plain", "sd": "plain", "v": "plain"})


def classify(path: tuple[str, ...]) -> object:
    if len(path) == 1:
        if path[0] in ("p", "props", "m", "meta"):
            return "props"
        return EVENT(path)
    return "props"


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = Params.parse(beacon.query)
    body = open_body(beacon, limits)
    data = loads(body.data, limits)
    require(data, ("n", "name"), "a Plausible event")
    if isinstance(data, dict):
        for key in ("p", "props", "m", "meta"):
            if isinstance(data.get(key), str) and data[key].lstrip().startswith("{"):
                data[key] = _Reencode(loads(data[key], limits))
    return Decoded([Doc(query, by_name({})), Doc(data, classify)],  # type: ignore[arg-type]
                   lambda: (query.encode(), body.wrap(dumps(_plain(data)))))


class _Reencode(dict):  # props that arrived as a JSON string go back as a JSON string
    pass


def _plain(data: object) -> object:
    if isinstance(data, dict):
        return {k: (dumps(dict(v)).decode() if isinstance(v, _Reencode) else v) for k, v in data.items()}
    return data
