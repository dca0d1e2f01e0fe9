"""Scrub an analytics beacon: the codec decodes, the roles and rules decide, the codec re-encodes (C4, C6, C8, C13).

Without member consent every identifier a vendor defines is pseudonymized, truncated, generalized or dropped
as `beacons.roles` says; fields the codec does not know are classified by name and scanned by the detectors,
and counted per vendor so operators can write rules for them. A beacon that cannot be decoded is never
forwarded with its identifiers: the caller answers it itself (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from privproxy import detectors, vendors
from privproxy.fields import REDACTED
from privproxy.scrub import Change, Scrubber
from privproxy.vendors.base import (CONFIGURABLE_ROLES, CONTACT_NAMES, Beacon, Classifier, CodecError, Codec,
                                    Decoded, Limits, Nested, Params, b64decode, b64encode, dumps, loads)


# Why a beacon (or a field inside it) was not forwarded: the decoder's reasons, a body over the size limit,
# and a bug in privproxy itself (never forwarded either).
FAILURE_REASONS = CodecError.REASONS + ("internal_error",)


@dataclass(frozen=True, slots=True)
class Settings:
    """The `beacons:` section of filters.yaml."""

    roles: dict[str, str] = field(default_factory=lambda: dict(CONFIGURABLE_ROLES))
    limits: Limits = Limits()
    enabled: frozenset[str] = frozenset(vendors.VENDORS)
    paths: tuple[tuple[str, str], ...] = ()  # extra (path pattern, vendor), checked before the defaults

    def codec_for(self, path: str, site_paths: tuple[tuple[str, str], ...] = ()) -> Codec | None:
        for pattern, name in site_paths + self.paths:
            if vendors.path_matches(pattern, path):
                return vendors.VENDORS[name]
        codec = vendors.codec_for_path(path)
        return codec if codec is not None and codec.name in self.enabled else None


@dataclass(slots=True)
class Result:
    vendor: str
    forward: bool  # False: answer `status` without forwarding (fail closed)
    query: str
    body: bytes
    changed: bool = False
    status: int = 204
    reason: str = ""  # CodecError reason when not forwarded
    unclassified: int = 0  # fields neither the codec nor a rule knows
    denied: bool = False  # the beacon's own consent signal refused identification
    field_errors: list[str] = field(default_factory=list)  # nested fields dropped because they did not decode


def process(codec: Codec, beacon: Beacon, scrubber: Scrubber, settings: Settings, consent: bool,
            changes: list[Change] | None) -> Result:
    """Decode, scrub unless consented, re-encode. Never raises for anything a request can contain."""
    walker = Walker(scrubber, settings.roles, settings.limits, changes)
    try:
        decoded = codec.decode(beacon, settings.limits)
        if consent and not decoded.denied:
            return Result(codec.name, True, beacon.query, beacon.body)  # as sent, byte for byte
        for doc in decoded.docs:
            if not isinstance(doc.data, (Params, dict, list)):
                raise CodecError("bad_structure", "a JSON beacon must be an object or a list")
            walker.doc(doc.data, doc.classify)
        query, body = decoded.encode() if walker.changed else (beacon.query, beacon.body)
    except CodecError as e:
        return Result(codec.name, False, "", b"", reason=e.reason)
    except Exception:  # a codec bug: the beacon is not forwarded, and the caller counts it
        return Result(codec.name, False, "", b"", reason="internal_error")
    return Result(codec.name, True, query, body, walker.changed, unclassified=walker.unclassified,
                  denied=decoded.denied, field_errors=walker.field_errors)


def cookie_header(header: str, scrubber: Scrubber, settings: Settings, changes: list[Change] | None) -> str:
    """The vendor's own cookies (already selected) without consent: by the cookie rules, and the ones no rule
    names as visitor identifiers (`client_id` role), which is what a vendor collector cookie is."""
    out = []
    walker = Walker(scrubber, settings.roles, settings.limits, changes)
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if not eq:
            continue
        rule = scrubber.rules.find("cookie", name)
        if rule is not None:
            after = walker.apply(rule.action, name, value, rule.id, rule.report_only)
        else:
            after = walker.apply(settings.roles["client_id"], name, value, "role:client_id", role="client_id")
        if after is not _DROP and after is not None:
            out.append(f"{name}={after}")
    return "; ".join(out)


# Values of IP-override fields that name no address but tell the collector to take the address of the upload
# request (Amplitude's "$remote"): behind the proxy that is the proxy's address, so they pass as they are;
# replacing them would make the collector refuse the event.
IP_DIRECTIVES = frozenset({"$remote"})


class Walker:
    """Applies roles, rules and detectors to every field of a decoded beacon, editing it in place."""

    def __init__(self, scrubber: Scrubber, roles: dict[str, str], limits: Limits,
                 changes: list[Change] | None) -> None:
        self.s = scrubber
        self.roles = roles
        self.limits = limits
        self.changes = changes
        self.changed = False
        self.unclassified = 0
        self.field_errors: list[str] = []

    def doc(self, data: Any, classify: Classifier, path: tuple[str, ...] = ()) -> None:
        if isinstance(data, Params):
            self.params(data, classify, path)
        elif isinstance(data, dict):
            self.mapping(data, classify, path)
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if isinstance(item, (dict, list)):
                    self.doc(item, classify, path)
                    continue
                after = self.field(classify, path, path[-1] if path else "", item)
                if after is _DROP:
                    data[i] = None  # keeps the positions of a list the vendor may read by index
                    self.changed = True
                elif after is not item:
                    data[i] = after
                    self.changed = True

    def params(self, p: Params, classify: Classifier, path: tuple[str, ...]) -> None:
        for i, pair in enumerate(p.pairs):
            name, value = pair[1], pair[2]
            if value is None:
                continue
            after = self.field(classify, path + (name,), name, value)
            if after is _DROP:
                p.set(i, None)
                self.changed = True
            elif after is not value and after != value:
                p.set(i, after if isinstance(after, str) else str(after))
                self.changed = True

    def mapping(self, d: dict[str, Any], classify: Classifier, path: tuple[str, ...], each=None) -> None:
        """Every key of an object through `each` (the codec's fields by default, custom properties in props)."""
        each = each or self.field
        for key in list(d):
            value = d[key]
            after = each(classify, path + (str(key),), str(key), value)
            if after is _DROP:
                del d[key]
                self.changed = True
            elif after is not value:
                d[key] = after
                self.changed = True

    def field(self, classify: Classifier, path: tuple[str, ...], name: str, value: Any) -> Any:
        """The value after scrubbing; _DROP (or None for Params) when the field goes."""
        role = classify(path)
        if isinstance(role, Nested):
            return self.nested(role, path, name, value)
        if role == "props":
            if isinstance(value, (dict, list)):
                return self.props(classify, path, value)
            return self.prop(classify, path, name, value)
        rule = self.s.rules.find("body", name)
        if rule is not None:  # the operator's rule for this name wins over the codec's role
            if isinstance(value, (dict, list)):
                return self.container(rule.action, classify, path, name, value, rule.id)
            return self.apply(rule.action, name, value, rule.id, rule.report_only)
        if role is None:
            # A field the codec does not know, under a name the identifier rules do (uid, gclid, email...):
            # the rule applies, as it does to custom properties and to the page's own query string.
            rule = self.s.rules.find("query", name)
            if rule is not None and not isinstance(value, (dict, list)):
                return self.apply(rule.action, name, value, rule.id, rule.report_only)
            if self.name_leaks(name):
                return self.apply("drop", "[name]", value, "detector:name")
            if isinstance(value, (dict, list)):
                self.doc(value, classify, path)
                return value
            return self.unknown(name, value)
        if isinstance(value, (dict, list)):
            action = "keep" if role in ("url", "keep", "plain", "consent") else self.roles.get(role, "drop")
            return self.container(action, classify, path, name, value, f"role:{role}")
        return self.by_role(role, name, value)

    def container(self, action: str, classify: Classifier, path: tuple[str, ...], name: str, value: Any,
                  rule: str) -> Any:
        if action == "keep":
            self.doc(value, classify, path)
            return value
        if action in ("drop", "redact"):
            return self.apply("drop", name, value, rule)
        # hash/truncate/generalize a list or object: each string inside gets the action
        if isinstance(value, list):
            return [self.apply(action, name, v, rule) if isinstance(v, (str, int)) else v for v in value]
        self.doc(value, classify, path)
        return value

    def by_role(self, role: str, name: str, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if role == "url":
            if not isinstance(value, str) or not value:
                return value
            after = self.s.url(value, "body", self.changes)
            return value if self.s.report_only else after
        if role in ("keep", "plain", "consent"):
            # Known to be non-identifying, but a buggy or hostile sender can put anything anywhere.
            return self.detect(name, value)
        return self.apply(self.roles.get(role, "drop"), name, value, f"role:{role}", role=role)

    def props(self, classify: Classifier, path: tuple[str, ...], value: Any) -> Any:
        """Custom properties and traits: every name is the customer's own, so each is classified here."""
        if isinstance(value, dict):
            self.mapping(value, classify, path, self.prop)
            return value
        if isinstance(value, list):
            for i, v in enumerate(value):
                after = self.props(classify, path, v) if isinstance(v, (dict, list)) else self.detect("", v)
                if after is _DROP or after is None:
                    value[i] = REDACTED
                    self.changed = True
                elif after is not v:
                    value[i] = after
                    self.changed = True
            return value
        return self.detect(path[-1] if path else "", value)

    def prop(self, classify: Classifier, path: tuple[str, ...], name: str, value: Any) -> Any:
        inner = classify(path)  # a vendor may still know a field inside its property bag ($ip, $current_url)
        if inner is not None and inner != "props":
            return self.field(classify, path, name, value)
        norm = name.lower().lstrip("$_")
        base = norm.removeprefix("initial_")  # SDKs keep first-touch copies: $initial_gclid, initial_fbclid
        rule = self.s.rules.find("body", name) or self.s.rules.find("body", norm)
        if rule is not None:
            if isinstance(value, (dict, list)):
                return self.container(rule.action, classify, path, name, value, rule.id)
            return self.apply(rule.action, name, value, rule.id, rule.report_only)
        if norm in CONTACT_NAMES or base in CONTACT_NAMES:
            return self.apply(self.roles["contact"], name, value, "role:contact", role="contact")
        rule = self.s.rules.find("query", norm) or self.s.rules.find("query", base)  # gclid, email, uid...
        if rule is not None and not isinstance(value, (dict, list)):
            return self.apply(rule.action, name, value, rule.id, rule.report_only)
        if self.name_leaks(name):
            return self.apply("drop", "[name]", value, "detector:name")
        if isinstance(value, (dict, list)):
            return self.props(classify, path, value)
        self.unclassified += 1
        return self.detect(name, value)

    def name_leaks(self, name: str) -> bool:
        """Custom names are the sender's choice too: a key that is an email is personal data itself."""
        return detectors.could_contain(name) and bool(detectors.scan(name, self.s.detectors.enabled))

    def unknown(self, name: str, value: Any) -> Any:
        self.unclassified += 1
        if self.s.unknown == "keep":
            return value
        if self.s.unknown == "drop":
            return self.apply("drop", name, value, "unknown_fields")
        return self.detect(name, value)

    def detect(self, name: str, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        after = self.s.free("body", name, value, self.changes)
        if after is None:
            return _DROP
        if after == value and len(value) >= 16 and _B64ISH.fullmatch(value) and self._b64_leaks(value):
            if self.changes is not None:
                self.changes.append(Change("body", name, "detector:base64", "redact", value, REDACTED,
                                           self.s.report_only))
            return value if self.s.report_only else REDACTED
        return after

    def _b64_leaks(self, value: str) -> bool:
        """An unknown field holding base64 (JSON, a query string...) that decodes to personal data."""
        try:
            raw, _ = b64decode(value)
            text = raw.decode("utf-8")
        except (CodecError, UnicodeDecodeError):
            return False
        return detectors.could_contain(text) and bool(detectors.scan(text, self.s.detectors.enabled))

    def apply(self, action: str, name: str, value: Any, rule: str, report_only: bool = False,
              role: str = "") -> Any:
        if action == "keep":
            return self.detect(name, value) if role not in ("client_id", "session_id", "user_id", "device_id") \
                else value
        if (value is None or value == "") and action != "drop":
            return value
        if role == "ip" and value in IP_DIRECTIVES:  # "use the address the upload came from": the proxy's own
            return value
        ro = self.s.report_only or report_only
        if action == "drop":
            after: Any = _DROP
        elif action == "hash":
            after = pseudonym_like(self.s, value, role or name)
        elif action == "generalize" and isinstance(value, str) and value.isdigit() and len(value) <= 6:
            after = str(int(value) - int(value) % 100)  # a screen or viewport size sent as text
        elif isinstance(value, str):
            after = self.s.act(action, value, name)
            if after is None:
                after = _DROP
        elif action == "generalize" and isinstance(value, (int, float)) and not isinstance(value, bool):
            after = int(value) - int(value) % 100  # a screen or viewport size, to a 100-pixel bucket
        else:
            after = REDACTED if action == "redact" else _DROP  # nothing left to keep of a truncated number
        if after is not value and after != value:
            if self.changes is not None:
                before = value if isinstance(value, str) else dumps(value).decode()
                shown = None if after is _DROP else after if isinstance(after, str) else str(after)
                self.changes.append(Change("body", name, rule, action, before, shown, ro))
            if ro:
                return value
        return after

    def nested(self, nested: Nested, path: tuple[str, ...], name: str, value: Any) -> Any:
        """A document inside a field (base64 JSON contexts, JSON strings, query strings): decoded, scrubbed
        and encoded the same way; a field that does not decode is dropped (it could hold anything)."""
        if isinstance(value, list):
            items = [self.nested(nested, path, name, v) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return [v for v in items if v is not _DROP]
            return value
        if not isinstance(value, str):
            if isinstance(value, dict):
                self.doc(value, nested.classify, ())
            return value
        if not value:
            return value
        try:
            if nested.encoding == "query":
                p = Params.parse(value[1:] if value.startswith("?") else value)
                before = self.changed
                self.changed = False
                self.params(p, nested.classify, ())
                now, self.changed = self.changed, before or self.changed
                if not now:
                    return value
                return ("?" if value.startswith("?") else "") + p.encode()
            if nested.encoding == "json":
                data = loads(value, self.limits)

                def encode(doc: Any) -> str:
                    return dumps(doc).decode()
            else:
                raw, urlsafe = b64decode(value)
                data = loads(raw, self.limits)

                def encode(doc: Any) -> str:
                    return b64encode(dumps(doc), urlsafe, value.endswith("="))
            if not isinstance(data, (dict, list)):  # a bare JSON scalar where a document belongs
                after = self.detect(name, data)
                return after if after is _DROP or after == data else encode(after)
            out = self._scrub_inner(data, nested.classify)
            return value if out is None else encode(out)
        except CodecError as e:
            self.field_errors.append(e.reason)
            if self.changes is not None:
                self.changes.append(Change("body", name, f"undecodable:{e.reason}", "drop", value[:64], None))
            return _DROP

    def _scrub_inner(self, data: Any, classify: Classifier) -> Any:
        before = self.changed
        self.changed = False
        self.doc(data, classify, ())
        now, self.changed = self.changed, before or self.changed
        return data if now else None


class _Drop:
    def __repr__(self) -> str:
        return "<drop>"


_DROP: Any = _Drop()
# GA client ids `<random>.<first-visit timestamp>`, and the cookies that wrap them: `GA1.1.<id>`, `fb.1.<id>`
_NUMERIC_ID = re.compile(r"^([A-Za-z]{2,3}\d?\.\d\.)?(\d+)\.(\d+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_B64ISH = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


def pseudonym_like(s: Scrubber, value: Any, role: str) -> Any:
    """A keyed pseudonym shaped like the original, so vendors that validate id formats still accept it:
    numbers stay numbers, `123.456` GA ids keep their shape, UUIDs stay UUIDs, hex stays hex."""
    text = value if isinstance(value, str) else str(value)
    mac = hmac.new(s.pseudonymizer.key(), f"beacon/{role}\x00{text}".encode(), hashlib.sha256).digest()
    n = int.from_bytes(mac[:8], "big")
    if isinstance(value, int) and not isinstance(value, bool):
        digits = max(1, len(str(abs(value))))
        return n % (10 ** min(digits, 18)) or 1
    if isinstance(value, float):
        return float(n % 10**12)
    m = _NUMERIC_ID.match(text)
    if m:
        head, a, b = m.groups()
        return (f"{head or ''}{n % 10 ** min(len(a), 19):0{min(len(a), 19)}d}."
                f"{int.from_bytes(mac[8:16], 'big') % 10 ** min(len(b), 19):0{min(len(b), 19)}d}")
    if text.isdigit() and text.isascii():  # ECIDs, numeric member ids
        return f"{int.from_bytes(mac[:16], 'big') % 10 ** min(len(text), 38):0{min(len(text), 38)}d}"
    if _UUID.match(text):
        u = str(uuid.UUID(bytes=mac[:16], version=4))
        return u.upper() if text.isupper() else u
    if _HEX.match(text):
        return mac.hex()[: len(text)]
    return s.pseudonymizer.pseudonym(text, f"beacon/{role}")
