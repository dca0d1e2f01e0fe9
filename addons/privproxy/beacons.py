"""[beacons] Which requests are analytics beacons (vendors, extra paths) and what the roles do to them (C4, C6, C13);
which vendors get their beacons straight from privproxy (`forward`, `forward_ca`), and which first-party paths
serve a vendor's tracker script (`scripts`): the first-party analytics gateway (privproxy.gateway).

The walker that applies these settings to a decoded beacon is privproxy.beacon.
"""

from __future__ import annotations

import difflib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from privproxy import sites, target, vendors
from privproxy.fields import ACTIONS
from privproxy.schema_types import any_of, arr, boolean, integer, obj, string, table
from privproxy.vendors.base import CONFIGURABLE_ROLES, Codec, Limits
from privproxy.yamlsrc import beside

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

KB = 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where privproxy itself sends a vendor's traffic: scheme, host, port and a base path ("" or `/matomo`)."""

    scheme: str
    host: str
    port: int
    base: str = ""

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def host_header(self) -> str:
        return self.origin.split("://", 1)[1]


@dataclass(frozen=True, slots=True)
class Forward:
    """`beacons.forward.VENDOR`: this vendor's scrubbed beacons go to `endpoint`, not to the site's upstream."""

    vendor: str
    endpoint: Endpoint
    strip_prefix: str = ""  # a first-party prefix (`/ingest`) before the vendor's own paths, removed on the way
    purposes: tuple[str, ...] = ("analytics",)  # what the site uses the vendor for (privproxy.vendor_consent)
    gvl_id: int | None = None  # the vendor's id in the IAB Global Vendor List: its TCF vendor consent is read

    def target(self, beacon_target: str) -> str:
        """The path and query the vendor gets for a beacon forwarded as `beacon_target` (the vendor's spelling,
        with the first-party prefix when there is one)."""
        path = beacon_target
        p = self.strip_prefix
        if p and path[:len(p)].lower() == p.lower() and path[len(p):len(p) + 1] in ("/", "?", ""):
            path = path[len(p):] or "/"
        return self.endpoint.base + path


@dataclass(frozen=True, slots=True)
class Script:
    """`beacons.scripts.PATH`: a vendor's tracker script served from a first-party path."""

    path: str
    url: str
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Settings:
    """The `beacons:` section of filters.yaml."""

    roles: dict[str, str] = field(default_factory=lambda: dict(CONFIGURABLE_ROLES))
    limits: Limits = Limits()
    enabled: frozenset[str] = frozenset(vendors.VENDORS)
    paths: tuple[tuple[str, str], ...] = ()  # extra (path pattern, vendor), checked before the defaults
    forward: tuple[Forward, ...] = ()  # vendors whose beacons privproxy sends itself (the gateway)
    forward_ca: bytes = b""  # PEM: CA certificates trusted for vendors and scripts besides the system store
    scripts: tuple[Script, ...] = ()  # first-party paths serving a vendor's tracker script
    bots: str = "keep"  # `drop`: beacons whose user agent is a crawler are answered 204, never sent (generalize.agent)

    def match(self, path: str, site_paths: tuple[tuple[str, str], ...] = ()) -> tuple[Codec, str] | None:
        """The vendor whose collection path the canonical `path` is (privproxy.target), and the spelling the
        beacon is forwarded in."""
        for pattern, name in site_paths + self.paths:
            spelling = vendors.path_matches(pattern, path)
            if spelling is not None:
                return vendors.VENDORS[name], spelling
        for f in self.forward:  # `/ingest/e/`: PostHog's `/e/` behind the first-party prefix it strips
            p = f.strip_prefix
            if p and path[:len(p)].lower() == p.lower() and path[len(p):len(p) + 1] == "/":
                codec = vendors.VENDORS[f.vendor]
                for pattern in codec.paths:
                    spelling = vendors.path_matches(pattern, path[len(p):])
                    if spelling is not None:
                        return codec, p + spelling
        got = vendors.codec_for_path(path)
        return got if got is not None and got[0].name in self.enabled else None

    def forward_for(self, vendor: str) -> Forward | None:
        """Where privproxy sends this vendor's beacons itself; None: to the site's upstream, as any request."""
        for f in self.forward:
            if f.vendor == vendor:
                return f
        return None

    def script_for(self, path: str) -> Script | None:
        """The tracker script served at the canonical `path`, matched as collection paths are."""
        for s in self.scripts:
            if vendors.path_matches(s.path, path) is not None:
                return s
        return None

    def codec_for(self, path: str, site_paths: tuple[tuple[str, str], ...] = ()) -> Codec | None:
        got = self.match(path, site_paths)
        return got[0] if got is not None else None


DEFAULT = Settings()
BOT_CHOICES = ("keep", "drop")
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
PURPOSES = ("analytics", "advertising")
DEFAULT_PURPOSES = {"meta_pixel": ("advertising",)}  # every other vendor: analytics


FORWARD_ENTRY = obj("A vendor's collector, with options.", {
    "url": string("The collector's URL: https://host[:port][/base path], e.g. https://eu.i.posthog.com."),
    "strip_prefix": string("A first-party path prefix before the vendor's own paths (`/ingest`): `/ingest/e/` is "
                           "PostHog's `/e/` and goes to the collector without the prefix."),
    "allow_http": boolean("Allow a plain http:// collector (a collector on the same host or private network): "
                          "beacons then cross the network unencrypted.", False),
    "purposes": arr("What the site uses this vendor for: `advertising` beacons are not sent for a visitor whose "
                    "browser sends Sec-GPC: 1 (an opt-out of sale and sharing); with `gvl_id`, the TCF string must "
                    "consent to each purpose's TCF purposes. Default: analytics (meta_pixel: advertising).",
                    string("A purpose.", enum=PURPOSES)),
    "gvl_id": integer("The vendor's id in the IAB TCF Global Vendor List: when the visitor's TCF string "
                      "(consent.tcf_cookie) is present, beacons go only with this vendor's consent bit and its "
                      "purposes' consents.", 1, 65535),
}, required=("url",))
ROLES = obj("What happens, without member consent, to each kind of field the vendor codecs know.", {
    role: string(doc, enum=ACTIONS, default=DEFAULT.roles[role]) for role, doc in ROLE_DOCS.items()})
SCHEMA = obj("Analytics beacons sent to first-party collection paths (C4, C6, C13).", {
    "vendors": arr("Vendors whose default paths are recognized.", sites.VENDOR,
                   default=[v for v in vendors.VENDORS if v in DEFAULT.enabled]),
    "paths": table("Extra collection paths for every site: path (`*` at either end) -> vendor.", sites.VENDOR),
    "roles": ROLES,
    "bots": string("Beacons sent by crawlers (Googlebot, GPTBot...: ua-parser's crawler list): `keep` processes "
                   "them like any other, `drop` answers them 204 without sending them (they count no visitor).",
                   enum=BOT_CHOICES, default=DEFAULT.bots),
    "max_body_kb": integer("Beacon bodies larger than this are answered 413 and not forwarded.", 1,
                           default=DEFAULT.limits.max_body // KB),
    "max_decompressed_kb": integer("Gzip bodies inflating beyond this are not forwarded (gzip bombs).", 1,
                                   default=DEFAULT.limits.max_decompressed // KB),
    "forward": table(
        "Vendors whose scrubbed beacons privproxy sends straight to the vendor (the first-party analytics gateway), "
        "instead of the site's upstream: vendor -> `https://collector.host[:port][/base]`, or the object form.",
        any_of("Where this vendor's beacons go.", string("The collector's https URL, e.g. https://eu.i.posthog.com."),
               FORWARD_ENTRY)),
    "forward_ca": string("PEM file of CA certificates trusted for the vendors' collectors and scripts, besides the "
                         "system store (a private CA); relative to this file."),
    "scripts": table("First-party paths that serve a vendor's tracker script, fetched and cached by privproxy: "
                     "path -> https URL, e.g. `/js/script.js: https://plausible.io/js/script.js`.",
                     string("The script's https URL.")),
})


def parse(node: Node | None, path: str = "filters.yaml") -> Settings:
    """The `beacons:` section of the filters.yaml at `path` (forward_ca is named relative to it)."""
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
        forward=parse_forward(m["forward"]) if "forward" in m else (),
        forward_ca=parse_ca(m["forward_ca"], path) if "forward_ca" in m else b"",
        scripts=parse_scripts(m["scripts"]) if "scripts" in m else (),
        bots=SCHEMA.read(m, "bots"),
    )


def endpoint(url: str, allow_http: bool = False) -> Endpoint:
    """`https://host[:port][/base]` -> Endpoint; raises ValueError saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme == "http" and not allow_http:
        raise ValueError("beacons would cross the network unencrypted; use https://, or add `allow_http: true` "
                         "(object form) for a collector on a private network")
    if parts.scheme not in ("http", "https"):
        raise ValueError("the scheme must be https, e.g. https://eu.i.posthog.com")
    if not parts.hostname:
        raise ValueError("a host is missing, e.g. https://eu.i.posthog.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("give only scheme://host[:port][/path], without a query, fragment or credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"bad port: {e}") from None
    base = parts.path.rstrip("/")
    if base and (target.parse(base).path != base):
        raise ValueError("the path must be in canonical form (no `..`, `//`, `%XX` or `;`)")
    return Endpoint(parts.scheme, parts.hostname, port, base)


def script_url(url: str) -> Endpoint:
    """A script's `https://host[:port]/path[?query]` -> the Endpoint it is fetched from; raises ValueError."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https":
        raise ValueError("scripts are fetched over https only")
    if parts.fragment or parts.username or parts.password:
        raise ValueError("no fragment or credentials")
    if parts.path in ("", "/"):
        raise ValueError("the URL names no script")
    ep = endpoint(f"https://{parts.netloc}")
    return Endpoint(ep.scheme, ep.host, ep.port)


def _vendor_name(name: str, n: Node) -> bool:
    if name in vendors.VENDORS:
        return True
    close = difflib.get_close_matches(name, list(vendors.VENDORS), n=1)
    n.error(f"`{name}` is not a vendor", f"did you mean `{close[0]}`?" if close
            else f"use one of: {', '.join(vendors.VENDORS)}")
    return False


def parse_forward(node: Node) -> tuple[Forward, ...]:
    out = []
    for name, n in node.items():
        if not _vendor_name(name, n):
            continue
        if isinstance(n.value, dict):
            m = n.mapping(FORWARD_ENTRY.props)
            if "url" not in m:
                n.error("`url` is missing", "add `url: https://collector.example`")
                continue
            url_node, allow_http = m["url"], FORWARD_ENTRY.read(m, "allow_http")
            purposes = tuple(dict.fromkeys(x.choice(PURPOSES, "analytics") for x in m["purposes"].seq())) \
                if "purposes" in m else DEFAULT_PURPOSES.get(name, ("analytics",))
            if not purposes:
                m["purposes"].error("no purpose", "name at least one: analytics, advertising")
            gvl_id = FORWARD_ENTRY.read(m, "gvl_id")
            prefix = m["strip_prefix"].string().rstrip("/") if "strip_prefix" in m else ""
            if prefix and (not prefix.startswith("/") or "*" in prefix or target.parse(prefix).path != prefix):
                m["strip_prefix"].error(f"`{prefix}` is not a canonical path prefix", "write it as `/ingest`")
                prefix = ""
        else:
            url_node, allow_http, prefix = n, False, ""
            purposes, gvl_id = DEFAULT_PURPOSES.get(name, ("analytics",)), None
        ep = url_node.parsed(lambda u, a=allow_http: endpoint(u, a), "collector URL",
                             "e.g. https://region1.google-analytics.com")
        if ep is not None:
            out.append(Forward(name, ep, prefix, purposes or ("analytics",), gvl_id))
    return tuple(out)


def parse_ca(node: Node, path: str) -> bytes:
    """The PEM CA file, read and checked now: a file that cannot be used is an error at load, not at the first
    beacon."""
    file = beside(path, node.string().strip())
    try:
        pem = Path(file).read_bytes()
    except OSError as e:
        node.error(f"cannot read `{file}` ({e.strerror or type(e).__name__})",
                   "give a readable PEM file of CA certificates (relative to this filters.yaml)")
        return b""
    try:
        ssl.create_default_context().load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        node.error(f"`{file}` holds no PEM CA certificate", "give the CA's certificate(s) as PEM "
                   "(-----BEGIN CERTIFICATE-----)")
        return b""
    return pem


def parse_scripts(node: Node) -> tuple[Script, ...]:
    out = []
    for path, n in node.items():
        if not path.startswith("/") or "*" in path or "?" in path:
            n.error(f"`{path}` is not a first-party path", "write the path the page loads, e.g. `/js/script.js`")
            continue
        try:
            canonical = target.parse(path).path
        except target.TargetError:
            canonical = ""
        if canonical != path:
            n.error(f"`{path}` is not in canonical form", "no `..`, `//`, `%XX` or `;` in the path")
            continue
        got = n.parsed(script_url, "script URL", "e.g. https://plausible.io/js/script.js")
        if got is not None:
            out.append(Script(path, n.string().strip(), got))
    return tuple(out)
