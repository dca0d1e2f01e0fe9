"""The shape of filters.yaml, assembled from the sections: each section module declares its node beside its
Settings and parse (privproxy.schema_types), and this is the one place the whole file is listed. The JSON Schema
that editors use (`filters.schema.json`, `privproxy schema`) is generated from it; policy.SECTIONS follows it.
"""

from __future__ import annotations

from typing import Any

from privproxy import (beacons, client_ip, detectors, fields, geo, https, protections, pseudonyms, scrub, sites,
                       truncate)
from privproxy import disclosure
from privproxy import referrer
from privproxy.access_log import settings as log_settings
from privproxy.consent import decision as consent
from privproxy.schema_types import T, integer, obj

SCHEMA_ID = "https://privproxy.invalid/filters.schema.json"

FILTERS = obj("privproxy filters.yaml", {
    "version": integer("Format version; required, so an empty or truncated file is refused.", enum=(1,)),
    "disable": protections.SCHEMA,
    "sites": sites.SCHEMA,
    "ip_truncation": truncate.SCHEMA,
    "client_ip": client_ip.SCHEMA,
    "https": https.SCHEMA,
    "pseudonymization": pseudonyms.SCHEMA,
    "report_only": scrub.REPORT_ONLY,
    "unknown_fields": scrub.UNKNOWN_FIELDS,
    "rules": fields.SCHEMA,
    "detectors": detectors.SCHEMA,
    "sensitive_paths": scrub.SENSITIVE_PATHS,
    "geo": geo.SCHEMA,
    "beacons": beacons.SCHEMA,
    "consent": consent.SCHEMA,
    "logging": log_settings.SCHEMA,
    "referrer": referrer.SCHEMA,
    "disclosure": disclosure.SCHEMA,
}, required=("version",))


def node(path: str) -> T:
    """The declaration at a dotted path: `https.hsts`, `rules[]`, `sites{}`."""
    return FILTERS.at(path)


def keys(path: str = "") -> set[str]:
    """The keys an object at `path` allows."""
    return FILTERS.keys(path)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for filters.yaml."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, "title": FILTERS.doc,
            **FILTERS.json()}
