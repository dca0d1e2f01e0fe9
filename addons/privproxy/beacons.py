"""[beacons] Which requests are analytics beacons (vendors, extra paths) and what the roles do to them (C4, C6, C13).

The walker that applies these settings to a decoded beacon is privproxy.beacon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from privproxy import sites, vendors
from privproxy.fields import ACTIONS
from privproxy.schema_types import arr, integer, obj, string, table
from privproxy.vendors.base import CONFIGURABLE_ROLES, Codec, Limits

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

KB = 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """The `beacons:` section of filters.yaml."""

    roles: dict[str, str] = field(default_factory=lambda: dict(CONFIGURABLE_ROLES))
    limits: Limits = Limits()
    enabled: frozenset[str] = frozenset(vendors.VENDORS)
    paths: tuple[tuple[str, str], ...] = ()  # extra (path pattern, vendor), checked before the defaults

    def match(self, path: str, site_paths: tuple[tuple[str, str], ...] = ()) -> tuple[Codec, str] | None:
        """The vendor whose collection path the canonical `path` is (privproxy.target), and the spelling the
        beacon is forwarded in."""
        for pattern, name in site_paths + self.paths:
            spelling = vendors.path_matches(pattern, path)
            if spelling is not None:
                return vendors.VENDORS[name], spelling
        got = vendors.codec_for_path(path)
        return got if got is not None and got[0].name in self.enabled else None

    def codec_for(self, path: str, site_paths: tuple[tuple[str, str], ...] = ()) -> Codec | None:
        got = self.match(path, site_paths)
        return got[0] if got is not None else None


DEFAULT = Settings()
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
ROLES = obj("What happens, without member consent, to each kind of field the vendor codecs know.", {
    role: string(doc, enum=ACTIONS, default=DEFAULT.roles[role]) for role, doc in ROLE_DOCS.items()})
SCHEMA = obj("Analytics beacons sent to first-party collection paths (C4, C6, C13).", {
    "vendors": arr("Vendors whose default paths are recognized.", sites.VENDOR,
                   default=[v for v in vendors.VENDORS if v in DEFAULT.enabled]),
    "paths": table("Extra collection paths for every site: path (`*` at either end) -> vendor.", sites.VENDOR),
    "roles": ROLES,
    "max_body_kb": integer("Beacon bodies larger than this are answered 413 and not forwarded.", 1,
                           default=DEFAULT.limits.max_body // KB),
    "max_decompressed_kb": integer("Gzip bodies inflating beyond this are not forwarded (gzip bombs).", 1,
                                   default=DEFAULT.limits.max_decompressed // KB),
})


def parse(node: Node | None) -> Settings:
    if node is None:
        return Settings()  # its own dicts: a policy never shares mutable state with another
    m = node.mapping(SCHEMA.props)
    enabled = DEFAULT.enabled
    if "vendors" in m:
        enabled = frozenset(x.choice(tuple(vendors.VENDORS), "ga4") for x in m["vendors"].seq())
    roles = dict(DEFAULT.roles)
    if "roles" in m:
        for role, rn in m["roles"].mapping(ROLES.props).items():
            roles[role] = rn.choice(ACTIONS, roles[role])
    return Settings(
        roles=roles,
        limits=Limits(max_body=SCHEMA.read(m, "max_body_kb") * KB,
                      max_decompressed=SCHEMA.read(m, "max_decompressed_kb") * KB),
        enabled=enabled,
        paths=sites.parse_beacon_paths(m["paths"]) if "paths" in m else (),
    )
