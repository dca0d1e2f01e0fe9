"""[vendors.matomo] Matomo (Piwik): `/matomo.php` and `/piwik.php`, GET or POST form, and bulk tracking
(`{"requests": ["?idsite=1&...", ...]}` JSON).

Parameter names: developer.matomo.org/api-reference/tracking-api.
"""

from __future__ import annotations

from privproxy.vendors.base import (Beacon, CodecError, Decoded, Doc, Limits, Nested, Params, by_name, dumps,
                                    is_form, loads, open_body, text_of)

name = "matomo"
title = "Matomo"
paths = ("/matomo.php", "/piwik.php", "*/matomo.php", "*/piwik.php")
cookies = ("_pk_id*", "_pk_ses*", "_pk_ref*", "_pk_cvar*", "_pk_hsr*", "MATOMO_SESSID", "mtm_*")

_CVAR = by_name({}, prefixes=(("", "props"),))  # {"1": ["name", "value"], ...}: every pair is custom
_FIELDS = by_name({
    "_id": "client_id", "cid": "client_id", "uid": "user_id", "_idn": "plain", "_idts": "plain",
    "_idvc": "plain", "_viewts": "plain", "_refts": "plain", "_ects": "plain", "pv_id": "plain",
    "cip": "ip", "ua": "user_agent", "uadata": "fingerprint", "lang": "keep",
    "url": "url", "urlref": "url", "_ref": "url", "link": "url", "download": "url",
    "_rcn": "keep", "_rck": "keep", "mtm_cid": "keep", "_gclid": "click_id", "gclid": "click_id",
    "res": "device", "_cvar": Nested("json", _CVAR), "cvar": Nested("json", _CVAR),
    "idsite": "plain", "rec": "plain", "apiv": "plain", "r": "plain", "rand": "plain", "h": "plain",
    "m": "plain", "s": "plain", "cdt": "plain", "send_image": "plain", "ping": "plain", "bots": "plain",
    "new_visit": "plain", "action_name": "keep", "e_c": "keep", "e_a": "keep", "e_n": "keep", "e_v": "plain",
    "c_n": "keep", "c_p": "keep", "c_t": "url", "c_i": "keep", "search": "keep", "search_cat": "keep",
    "search_count": "plain", "idgoal": "plain", "revenue": "plain", "ec_id": "keep", "ec_items": "keep",
    "ec_st": "plain", "ec_tx": "plain", "ec_sh": "plain", "ec_dt": "plain", "cs": "plain", "ca": "plain",
    "pf_net": "plain", "pf_srv": "plain", "pf_tfr": "plain", "pf_dm1": "plain", "pf_dm2": "plain",
    "pf_onl": "plain", "pv_ping": "plain", "fa_vid": "keep", "fa_fv": "plain", "fa_st": "plain",
    "token_auth": "plain", "queuedtracking": "plain", "cookie": "plain", "fla": "plain", "java": "plain",
    "dir": "plain", "qt": "plain", "realp": "plain", "pdf": "plain", "wma": "plain", "ag": "plain",
    "gears": "plain", "consent": "consent", "bw_bytes": "plain", "ma_id": "keep", "ma_ti": "keep",
}, prefixes=(("dimension", "props"), ("_pk_", "client_id"), ("pf_", "plain"), ("ma_", "keep")))


def HIT(path: tuple[str, ...]) -> str | Nested | None:  # noqa: N802 (a classifier, like the other codecs' HIT)
    """A PHP array parameter (`uid[]`, `uid[x]`) is the parameter its base name is."""
    return _FIELDS(path[:-1] + (path[-1].partition("[")[0],)) if path and "[" in path[-1] else _FIELDS(path)


def php_name(name: str) -> str | None:
    """The name PHP gives a decoded parameter name in $_GET, $_POST and parse_str (main/php_variables.c,
    PHP 8): it ends at a NUL byte, leading spaces go, ` ` and `.` become `_`, `a[b]` is an array `a` (its
    brackets kept here), an unclosed `[` becomes `_`; an empty name is ignored (None). Matomo reads its
    parameters through PHP, so `%20uid`, `uid%00x` and `.id` are `uid`, `uid` and `_id` to it, and to
    privproxy; tests/unit/vendors/test_php_names.py checks this against php-cli."""
    name = name.partition("\0")[0].lstrip(" ")
    base, bracket, rest = name.partition("[")
    base = base.replace(" ", "_").replace(".", "_")
    if not base:
        return None
    if not bracket:
        return base
    if "]" not in rest:  # not an index: the `[` and everything after it is part of the name
        return base + "_" + rest.replace(" ", "_").replace(".", "_").replace("[", "_")
    # An array: indices as PHP splits them; anything after the last `]` that opens no new index is ignored.
    # Positions, not slices: cutting the rest off after each index copied it each time, quadratic in a name of
    # thousands of `[x]` (issue 17).
    rest = "[" + rest
    pos, end = 0, 0
    while rest.startswith("[", pos):
        close = rest.find("]", pos)
        if close < 0:
            break
        pos = end = close + 1
    return base + rest[:end]


_BULK = by_name({"requests": Nested("query", HIT, php_name), "token_auth": "plain"})


def _params(text: str) -> Params:
    return Params.parse(text, names=php_name)


def decode(beacon: Beacon, limits: Limits) -> Decoded:
    query = _params(beacon.query)
    if not beacon.body:
        return Decoded([Doc(query, HIT)], lambda: (query.encode(), beacon.body))
    # matomo.js sends bulk requests as JSON under a form Content-Type; Matomo reads them as JSON.
    body = open_body(beacon, limits, json_as_form=True)
    text = text_of(body.data)
    if body.json:
        data = loads(body.data, limits)
        # Matomo treats a body as bulk only when it holds `requests`; anything else it reads as a form, which
        # privproxy would not have inspected as such: refused.
        if not isinstance(data, dict) or not isinstance(data.get("requests"), list) \
                or set(data) - {"requests", "token_auth"}:
            raise CodecError("ambiguous_body", "JSON that is not a bulk request")
        return Decoded([Doc(query, HIT), Doc(data, _BULK)], lambda: (query.encode(), body.wrap(dumps(data))))
    if not is_form(beacon) and "=" not in text:
        raise CodecError("unsupported_format", "neither a form nor bulk JSON")
    form = _params(text)
    return Decoded([Doc(query, HIT), Doc(form, HIT)],
                   lambda: (query.encode(), body.wrap(form.encode().encode())))
