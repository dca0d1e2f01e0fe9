"""The shape of filters.yaml, declared once: the parser takes its key sets from here, and the JSON Schema that
editors use (`filters.schema.json`, `privproxy schema`) is generated from the same declaration.

The parser (policy.py) still owns semantic checks (CIDRs, URLs, cross-references); this module owns names,
types, enumerations, defaults and the descriptions an editor shows on hover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from privproxy import client_ip, detectors, fields, https, protections, pseudonyms, scrub, vendors
from privproxy.consent import token
from privproxy.vendors.base import CONFIGURABLE_ROLES

SCHEMA_ID = "https://privproxy.invalid/filters.schema.json"


@dataclass(frozen=True)
class T:
    """One node of the declaration. `kind`: object, map, array, string, integer, boolean, pattern_list."""

    kind: str
    doc: str = ""
    props: dict[str, T] = field(default_factory=dict)  # object
    required: tuple[str, ...] = ()
    values: T | None = None  # map values / array items
    enum: tuple[Any, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None
    pattern: str | None = None


def obj(doc: str, props: dict[str, T], required: tuple[str, ...] = ()) -> T:
    return T("object", doc, props=props, required=required)


def arr(doc: str, items: T, default: Any = None) -> T:
    return T("array", doc, values=items, default=default)


def string(doc: str, enum: tuple[Any, ...] = (), default: Any = None, pattern: str | None = None) -> T:
    return T("string", doc, enum=enum, default=default, pattern=pattern)


def integer(doc: str, minimum: int | None = None, maximum: int | None = None, default: Any = None,
            enum: tuple[Any, ...] = ()) -> T:
    return T("integer", doc, minimum=minimum, maximum=maximum, default=default, enum=enum)


def boolean(doc: str, default: bool) -> T:
    return T("boolean", doc, default=default)


CONTROL_PATTERN = r"^C(?:[1-9]|1[0-5])$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
KEY_ID_PATTERN = rf"^{token.KEY_ID.pattern}$"
CONTROLS = arr("Controls (C1-C15 in the policies' CONTROLS.md) this entry enforces; reports cite them.",
               string("A control id.", pattern=CONTROL_PATTERN))

VENDOR = string("An analytics vendor.", enum=tuple(vendors.VENDORS))
SITE = obj("A website behind the proxy.", {
    "hosts": arr("Host names (the visitor's Host header) that belong to this site.", string("A host name.")),
    "upstream": string("The origin server, e.g. http://10.0.0.5:8080."),
    "beacon_paths": T("map", "This site's own first-party collection paths, each mapped to the vendor whose "
                              "format it receives, e.g. `/metrics/g/collect: ga4`.", values=VENDOR),
})

RULE = obj("A field rule: what happens to fields with these names in these scopes.", {
    "id": string("Short name; metrics, logs of decisions and `privproxy explain` cite it."),
    "action": string("What happens to a matching value.", enum=fields.ACTIONS),
    "scopes": arr("Where the names are looked up.", string("A scope.", enum=fields.SCOPES)),
    "names": arr("Field names, case-insensitive; `*` and `?` are wildcards.", string("A name or glob.")),
    "controls": CONTROLS,
    "why": string("The policy clause this rule implements (shown by explain and the disclosure report)."),
    "report_only": boolean("Count what the rule would change, change nothing.", False),
    "regions": arr("Apply only to visitors from these countries (ISO 3166-1 alpha-2: GB, not UK) or groups "
                   "(EU, EEA), e.g. stricter handling for EU visitors (C14). A visitor whose country is unknown gets "
                   "the rule.",
                   string("A country code or group.", pattern=r"^(?:[A-Z]{2}|EU|EEA)$")),
}, required=("id", "action", "scopes", "names"))

SENSITIVE = obj("A page whose visit alone reveals sensitive information (C10).", {
    "id": string("Short name for metrics and explain."),
    "pattern": string("Path pattern: `*` one segment, `**` any rest.", pattern="^/"),
    "replace": string("What the path becomes in logs and beacons (default: the pattern with ** as *)."),
    "controls": CONTROLS,
}, required=("pattern",))

DETECTOR = string("A detector.", enum=tuple(detectors.FINDERS))

ROLE_DOCS = {
    "client_id": "Browser or device-scoped visitor ids (GA cid, Matomo _id, Snowplow duid, Segment anonymousId).",
    "session_id": "Session ids.",
    "user_id": "The site's account or member id sent to the vendor.",
    "device_id": "Advertising and device ids (IDFA, IDFV, Android ids, ECID).",
    "ip": "IP address overrides inside the beacon.",
    "user_agent": "User-agent overrides inside the beacon.",
    "contact": "Emails, phone numbers, names, addresses, birthdays: clear or hashed.",
    "click_id": "Ad click ids (gclid, fbclid, _fbc...) wherever the SDK copied them.",
    "fingerprint": "High-entropy client hints, device models, plugin lists.",
    "device": "Screen and viewport sizes.",
}

FILTERS = obj("privproxy filters.yaml", {
    "version": integer("Format version; required, so an empty or truncated file is refused.", enum=(1,)),
    "disable": arr("Shipped protections this file switches off on purpose. Without the baseline's protection "
                   "listed here, a setting weaker than the shipped one is refused; `privproxy check`, `privproxy "
                   "report` and privproxy_protection_disabled show the list.",
                   string("A protection id: a shipped rule or sensitive path id, https-redirect, hsts, "
                          "secure-cookies, ip-truncation, unknown-fields, report-only, detector:NAME, vendor:NAME, "
                          "role:NAME, signal:gpc|dnt|tcf|withdrawal.", enum=tuple(protections.IDS))),
    "sites": T("map", "Sites by name: Host names and their origin. `default` may set the upstream of "
                      "`--upstream`.", values=SITE),
    "ip_truncation": obj("How client addresses are truncated everywhere (C2, C8).", {
        "ipv4_prefix": integer("Bits of an IPv4 address kept.", 0, 32, 24),
        "ipv6_prefix": integer("Bits of an IPv6 address kept.", 0, 128, 48),
    }),
    "client_ip": obj("Which peers are believed about the client address (C15).", {
        "trusted_proxies": arr("Addresses or CIDRs of your load balancers.", string("An address or CIDR.")),
        "headers": arr("Forwarding headers read from trusted proxies, the first one present wins: x-forwarded-for "
                       "and forwarded are walked right to left; a CDN's single-address header (cf-connecting-ip, "
                       "true-client-ip, cloudfront-viewer-address, fastly-client-ip, x-real-ip, fly-client-ip) "
                       "only when every request reaching the trusted proxies passed that CDN.",
                       string("A header.", enum=client_ip.HEADER_CHOICES),
                       default=list(client_ip.Settings().headers)),
    }),
    "https": obj("HTTPS enforcement (C1).", {
        "redirect": boolean("Redirect plain HTTP to HTTPS.", True),
        "redirect_status": integer("Redirect status; 308 keeps method and body.", default=308,
                                   enum=https.REDIRECT_CODES),
        "https_port": integer("Port in redirect targets when HTTPS is not on 443.", 1, 65535),
        "exempt_paths": arr("Path prefixes served over plain HTTP (ACME challenges, health checks).",
                            string("A path prefix.", pattern="^/"), default=list(https.Settings().exempt_paths)),
        "hsts": obj("Strict-Transport-Security on every HTTPS response.", {
            "max_age": integer("Seconds.", 0, default=63072000),
            "include_subdomains": boolean("includeSubDomains.", True),
            "preload": boolean("preload (only once every subdomain serves HTTPS).", False),
        }),
        "secure_cookies": boolean("Add `Secure` to every Set-Cookie on HTTPS.", True),
        "min_tls": string("Lowest TLS version accepted from clients.", enum=https.TLS_VERSIONS, default="TLS1_2"),
    }),
    "pseudonymization": obj("Keyed pseudonyms for the `hash` action (C2, C11).", {
        "key_file": string("Shared key file (relative to this file) holding the current period's key, advanced "
                           "one way by `privproxy keys rotate`: past keys are forgotten. Recommended; when set, "
                           "secret_env is not used."),
        "secret_env": string("Environment variable holding a fixed secret (never the YAML itself); whoever holds "
                             "it can recompute past pseudonyms. Used when key_file is not set.",
                             default="PRIVPROXY_SECRET", pattern=ENV_NAME_PATTERN),
        "rotation": string("Key period. With key_file (or neither) past keys are forgotten; with secret_env they "
                           "can be recomputed from the secret.", enum=tuple(pseudonyms.ROTATIONS), default="daily"),
    }),
    "report_only": boolean("Count what all rules would change, change nothing.", False),
    "unknown_fields": string("Fields no rule names: scan with the detectors, drop, or keep.",
                             enum=scrub.UNKNOWN_CHOICES, default="detect"),
    "rules": arr("Field rules, first match wins.", RULE),
    "detectors": obj("Personal data found in any value whatever its name (C8).", {
        "enabled": arr("Detectors in use.", DETECTOR, default=list(detectors.FINDERS)),
        "actions": T("map", "Action per detector.", values=string("Action.", enum=scrub.DETECTOR_ACTIONS)),
    }),
    "sensitive_paths": arr("Pages generalized in every logged or beaconed URL (C10).", SENSITIVE),
    "geo": obj("Coarse geography from a MaxMind DB, looked up before the address is truncated (C9, C14).", {
        "database": string("Path of a GeoLite2/GeoIP2 City or Country, or DB-IP lite .mmdb file; "
                           "`--geoip-db` overrides it."),
        "granularity": string("The finest level logged.", enum=("country", "subdivision", "city"),
                              default="subdivision"),
        "small_cell": obj("Rare regions are logged one level coarser so they cannot single out a visitor.", {
            "k": integer("A region seen fewer than k times in the window is logged coarser; 1 turns it off.",
                         1, default=5),
            "window_seconds": integer("Length of the counting window.", 1, default=3600),
        }),
    }),
    "beacons": obj("Analytics beacons sent to first-party collection paths (C4, C6, C13).", {
        "vendors": arr("Vendors whose default paths are recognized.", VENDOR, default=list(vendors.VENDORS)),
        "paths": T("map", "Extra collection paths for every site: path (`*` at either end) -> vendor.",
                   values=VENDOR),
        "roles": obj("What happens, without member consent, to each kind of field the vendor codecs know.", {
            role: string(doc, enum=fields.ACTIONS, default=CONFIGURABLE_ROLES[role])
            for role, doc in ROLE_DOCS.items()}),
        "max_body_kb": integer("Beacon bodies larger than this are answered 413 and not forwarded.", 1,
                               default=512),
        "max_decompressed_kb": integer("Gzip bodies inflating beyond this are not forwarded (gzip bombs).", 1,
                                       default=2048),
    }),
    "consent": obj("Member-linkage consent (C5, C12, C13): a member is linked to their identity only with a "
                   "valid token from the member system and no signal saying no. Token spec: docs/consent-token.md.", {
        "enabled": boolean("Read consent tokens; off: nobody is ever linked.", True),
        "cookie": string("Cookie carrying the member system's token; empty: no cookie source.",
                         default="privproxy_consent", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]*$"),
        "header": string("Request header carrying the token, believed only from client_ip.trusted_proxies "
                         "(e.g. set by a login gateway); empty: off.", default="", pattern=r"^[A-Za-z0-9-]*$"),
        "keys": arr("Accepted signing keys; the first one is active (mints). Each names the environment variable "
                    "that holds the key, never the key itself. Rotate by listing the new key first and removing "
                    "the old one once its tokens expired.",
                    obj("A signing key.", {
                        "id": string("Key id written into tokens.", pattern=KEY_ID_PATTERN),
                        "env": string("Environment variable holding the key (at least 32 characters).",
                                      pattern=ENV_NAME_PATTERN),
                    }, required=("id", "env")),
                    default=[{"id": "k1", "env": "PRIVPROXY_CONSENT_KEY"}]),
        "max_ttl_days": integer("Tokens with a longer lifetime are refused.", 1, default=400),
        "honor_gpc": boolean("`Sec-GPC: 1` overrides a valid token.", True),
        "honor_dnt": boolean("`DNT: 1` overrides a valid token.", True),
        "tcf_cookie": string("Cookie with an IAB TCF v2.2 string; a token counts only when it consents to "
                             "purposes 1, 7, 8 and 9. Empty: not read.", default="euconsent-v2"),
        "withdrawal_cookie": string("A cookie the site sets when a member withdraws; present: no linkage.",
                                    default="privproxy_consent_withdrawn"),
        "revocation_file": string("File of withdrawn member ids (`member [time]` per line), re-read when it changes; "
                                  "relative to filters.yaml. `privproxy consent revoke` appends to it."),
        "linked_log": obj("The linked log (linked.jsonl under --log-dir): consented members' requests with their id.", {
            "retention_days": integer("Rotated linked files older than this are deleted; 0 keeps them forever.",
                                      0, default=90),
        }),
    }),
    "logging": obj("The access log: format, rotation, retention (C3, C9, C11).", {
        "format": string("json: access.jsonl; combined: access.log (GoAccess, AWStats); both. "
                         "`--log-format` overrides it.", enum=("json", "combined", "both"), default="json"),
        "rotation": obj("When the live file is moved aside as <name>-YYYY-MM-DD[.N].", {
            "daily": boolean("Rotate at midnight UTC.", True),
            "max_size_mb": integer("Also rotate when the file reaches this size; 0: no size limit.", 0, default=0),
        }),
        "retention_days": integer("Rotated files older than this many days are deleted; 0 keeps them forever.",
                                  0, default=30),
    }),
}, required=("version",))


def node(path: str) -> T:
    """The declaration at a dotted path: `https.hsts`, `rules[]`, `sites{}`."""
    t = FILTERS
    for part in path.split(".") if path else ():
        name = part.rstrip("[]{}")
        if name:
            t = t.props[name]
        if part.endswith(("[]", "{}")):
            assert t.values is not None
            t = t.values
    return t


def keys(path: str = "") -> set[str]:
    """The keys an object at `path` allows; the parser rejects every other key with a did-you-mean."""
    return set(node(path).props)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for filters.yaml."""
    out = _json(FILTERS)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, "title": FILTERS.doc, **out}


def _json(t: T) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if t.doc:
        d["description"] = t.doc
    if t.kind == "object":
        d["type"] = "object"
        d["properties"] = {k: _json(v) for k, v in t.props.items()}
        d["additionalProperties"] = False
        if t.required:
            d["required"] = list(t.required)
    elif t.kind == "map":
        d["type"] = "object"
        assert t.values is not None
        d["additionalProperties"] = _json(t.values)
    elif t.kind == "array":
        d["type"] = "array"
        assert t.values is not None
        d["items"] = _json(t.values)
    else:
        d["type"] = t.kind
    if t.enum:
        d["enum"] = list(t.enum)
    if t.minimum is not None:
        d["minimum"] = t.minimum
    if t.maximum is not None:
        d["maximum"] = t.maximum
    if t.pattern:
        d["pattern"] = t.pattern
    if t.default is not None:
        d["default"] = t.default
    return d
