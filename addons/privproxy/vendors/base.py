"""[vendors] The interface every analytics codec implements, and the wire helpers they share (C4, C6, C13).

A codec knows one vendor's formats and nothing of policy: `decode` turns a beacon into documents whose fields
carry roles (client id, page URL, contact data...), and the `encode` it returns writes them back in the same
transport and encoding. What happens to each role is decided by filters.yaml, in privproxy.beacon.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote_plus, unquote_plus

import orjson

# Roles whose action filters.yaml sets (`beacons.roles`), with the shipped defaults.
CONFIGURABLE_ROLES = {
    "client_id": "hash",  # browser/device-scoped visitor ids (GA cid, Matomo _id, Snowplow duid, anonymousId)
    "session_id": "hash",
    "user_id": "hash",  # the site's own account id sent to the vendor
    "device_id": "hash",  # advertising ids, IDFA/IDFV/Android ids, ECID
    "ip": "truncate",  # IP overrides inside the beacon
    "user_agent": "generalize",  # user-agent overrides
    "contact": "drop",  # emails, phones, names, addresses, birthdays (clear or hashed)
    "click_id": "drop",  # gclid, fbclid, _fbc... wherever the SDK copied them
    "fingerprint": "drop",  # high-entropy client hints and fingerprints
    "device": "generalize",  # screen and viewport sizes
}
# Roles with a fixed treatment.
FIXED_ROLES = (
    "url",  # page URL or referrer: passes the URL rules (click ids, emails, sensitive paths)
    "keep",  # a known, non-identifying field; its strings are still scanned by the detectors
    "plain",  # a known field whose value is structure (numbers, flags, versions): untouched
    "consent",  # the visitor's consent signal: never changed, never weakened
    "props",  # a container of custom properties: each one is classified by name, then by the detectors
)
ROLES = tuple(CONFIGURABLE_ROLES) + FIXED_ROLES

# Custom property and trait names that are contact data whatever the vendor (Segment, Mixpanel, PostHog,
# Amplitude and Braze reserved traits; `$`-prefixed forms are normalized away before the lookup).
CONTACT_NAMES = frozenset("""
email e-mail mail email_address emailaddress phone phone_number phonenumber mobile tel telephone fax
name first_name firstname last_name lastname full_name fullname username user_name display_name
address street street_address address1 address2 city zip zipcode zip_code postal_code postalcode
birthday date_of_birth dob birthdate gender age avatar
sha256_email_address sha256_phone_number sha256_first_name sha256_last_name sha256_street em ph fn ln db ge ct st zp
""".split())

# Ad click ids as SDKs copy them into properties, traits and campaign context. Copies under a prefix are
# the same id: first touch (`initial_gclid`, `$initial_gclid`), session entry (posthog-js's
# `$session_entry_gclid`), last touch (`latest_gclid`)...
CLICK_IDS = frozenset("""
gclid gclsrc gad_source dclid gbraid wbraid fbclid msclkid ttclid twclid li_fat_id ko_click_id rtd_cid rdt_cid
mc_cid igshid epik qclid sccid irclid _kx
""".split())
_CLICK_ID_NAME = re.compile("(?:^|_)(?:" + "|".join(sorted(map(re.escape, CLICK_IDS), key=len, reverse=True)) + ")$")


def is_click_id(name: str) -> bool:
    return _CLICK_ID_NAME.search(name.removeprefix("$").lower()) is not None


class CodecError(Exception):
    """The beacon cannot be decoded; `reason` is a bounded metric label."""

    REASONS = ("bad_json", "bad_base64", "bad_gzip", "bad_form", "too_large", "too_deep", "unsupported_encoding",
               "unsupported_format", "bad_structure")

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in self.REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 512 * 1024
    max_decompressed: int = 2 * 1024 * 1024
    max_depth: int = 32


@dataclass(frozen=True, slots=True)
class Beacon:
    """A beacon request as it arrived (body already read, still as sent)."""

    method: str
    path: str  # without the query
    query: str  # raw, without '?'
    content_type: str = ""
    content_encoding: str = ""
    body: bytes = b""


# A classifier maps a field's key path (list positions left out) to its role, to a Nested document, or to
# None when the vendor defines no such field.
type Classifier = Callable[[tuple[str, ...]], "str | Nested | None"]


@dataclass(frozen=True, slots=True)
class Nested:
    """A field whose value is itself an encoded document: `json`, `b64json` (URL-safe or standard) or `query`."""

    encoding: str
    classify: Classifier


@dataclass(slots=True)
class Doc:
    data: Any  # Params, or decoded JSON (dict/list) that the scrubber edits in place
    classify: Classifier


@dataclass(slots=True)
class Decoded:
    docs: list[Doc]
    encode: Callable[[], tuple[str, bytes]]  # -> (query, body) in the beacon's own transport and encoding
    denied: bool = False  # the beacon's own consent signal (gcs, npa, opt-out) forbids identification


class Codec(Protocol):
    name: str  # the `vendors:` key, and a metric label
    title: str
    paths: tuple[str, ...]  # default first-party collection paths; a trailing `*` matches any rest
    cookies: tuple[str, ...]  # cookies the vendor's collector reads (globs); every other cookie is withheld

    def decode(self, beacon: Beacon, limits: Limits) -> Decoded: ...


# --- query strings and forms --------------------------------------------------------------------------------
@dataclass(slots=True)
class Params:
    """An ordered query string or form body; untouched pairs keep their exact bytes when encoded again."""

    pairs: list[list[Any]] = field(default_factory=list)  # [raw pair, name, value, changed?]

    @classmethod
    def parse(cls, text: str) -> Params:
        p = cls()
        for part in text.split("&"):
            if not part:
                continue
            raw_name, _, raw_value = part.partition("=")
            p.pairs.append([part, unquote_plus(raw_name, errors="replace"), unquote_plus(raw_value, errors="replace"),
                            False])
        return p

    def get(self, name: str) -> str | None:
        for pair in self.pairs:
            if pair[1] == name:
                return pair[2]
        return None

    def set(self, index: int, value: str | None) -> None:
        if value is None:
            self.pairs[index] = [None, self.pairs[index][1], None, True]
        else:
            self.pairs[index][2] = value
            self.pairs[index][3] = True

    def encode(self) -> str:
        out = []
        for raw, name, value, changed in self.pairs:
            if value is None:
                continue
            out.append(f"{quote_plus(name, safe='[]$.')}={quote_plus(value, safe='-_.~:/,|$')}" if changed else raw)
        return "&".join(out)


# --- bodies ---------------------------------------------------------------------------------------------------
GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes, limits: Limits) -> bytes:
    """Bounded decompression: a gzip bomb stops at the limit instead of filling memory."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limits.max_decompressed + 1)
    except zlib.error as e:
        raise CodecError("bad_gzip", str(e)) from None
    if len(out) > limits.max_decompressed or d.unconsumed_tail:
        raise CodecError("too_large", "decompressed body over the limit")
    if not d.eof:
        raise CodecError("bad_gzip", "truncated gzip stream")
    return out


def gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@dataclass(slots=True)
class Body:
    """A request body with its transfer wrapping undone; `wrap` puts it back the same way."""

    data: bytes
    gzipped: bool

    def wrap(self, data: bytes) -> bytes:
        return gzip(data) if self.gzipped else data


def open_body(beacon: Beacon, limits: Limits, gzip_hint: bool = False) -> Body:
    """The body, gunzipped when Content-Encoding says so, when a parameter says so (`gzip_hint`), or when it
    starts with the gzip magic bytes and no header says anything (some SDKs send gzip without the header)."""
    if len(beacon.body) > limits.max_body:
        raise CodecError("too_large", "body over the limit")
    enc = beacon.content_encoding.strip().lower()
    if enc in ("", "identity"):
        if beacon.body.startswith(GZIP_MAGIC) or (gzip_hint and beacon.body[:2] == GZIP_MAGIC):
            return Body(gunzip(beacon.body, limits), True)
        if gzip_hint:
            raise CodecError("bad_gzip", "compression announced but the body is not gzip")
        return Body(beacon.body, False)
    if enc in ("gzip", "x-gzip"):
        return Body(gunzip(beacon.body, limits), True)
    raise CodecError("unsupported_encoding", enc[:20])


def loads(data: bytes | str, limits: Limits) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise CodecError("bad_json", str(e)[:80]) from None
    check_depth(value, limits.max_depth)
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def check_depth(value: Any, limit: int) -> None:
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            raise CodecError("too_deep", f"nesting deeper than {limit}")
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def b64decode(text: str | bytes) -> tuple[bytes, bool]:
    """(bytes, urlsafe?) from standard or URL-safe base64, padded or not (SDKs send all four)."""
    s = text.strip() if isinstance(text, str) else text.strip().decode("ascii", "replace")
    if not _B64.fullmatch(s):
        raise CodecError("bad_base64")
    urlsafe = "-" in s or "_" in s
    s += "=" * (-len(s) % 4)
    try:
        return (base64.urlsafe_b64decode(s) if urlsafe else base64.b64decode(s, validate=True)), urlsafe
    except (binascii.Error, ValueError):
        raise CodecError("bad_base64") from None


def b64encode(data: bytes, urlsafe: bool, padded: bool) -> str:
    out = (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode()
    return out if padded else out.rstrip("=")


def is_form(beacon: Beacon) -> bool:
    return "application/x-www-form-urlencoded" in beacon.content_type.lower()


def text_of(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("bad_form", "body is not UTF-8") from None


def by_name(table: dict[str, str | Nested], prefixes: tuple[tuple[str, str | Nested], ...] = ()) -> Classifier:
    """A classifier for flat fields: exact names, then name prefixes (`ep.`, `cd`)."""

    def classify(path: tuple[str, ...]) -> str | Nested | None:
        name = path[-1] if path else ""
        got = table.get(name)
        if got is not None:
            return got
        for prefix, role in prefixes:
            if name.startswith(prefix):
                return role
        return None

    return classify


def params_decoded(beacon: Beacon, classify: Classifier, limits: Limits) -> Decoded:
    """GET query or POST form: the common transport of GA, Matomo, Meta Pixel, Adobe, Snowplow GET."""
    query = Params.parse(beacon.query)
    docs = [Doc(query, classify)]
    body: Body | None = None
    form: Params | None = None
    if beacon.body:
        body = open_body(beacon, limits)
        form = Params.parse(text_of(body.data))
        docs.append(Doc(form, classify))

    def encode() -> tuple[str, bytes]:
        new_body = beacon.body
        if form is not None and body is not None:
            new_body = body.wrap(form.encode().encode())
        return query.encode(), new_body

    return Decoded(docs, encode)


def lines_decoded(beacon: Beacon, limits: Limits, classify: Classifier) -> Decoded:
    """URL parameters plus a body of hits, one query string per line (GA4 and UA batches): each line is
    its own document; line breaks are written back as they came."""
    query = Params.parse(beacon.query)
    docs = [Doc(query, classify)]
    body: Body | None = None
    lines: list[Params] = []
    seps: list[str] = []
    if beacon.body:
        body = open_body(beacon, limits)
        for i, part in enumerate(re.split(r"(\r?\n)", text_of(body.data))):
            if i % 2:
                seps.append(part)
            else:
                lines.append(Params.parse(part))
        docs.extend(Doc(line, classify) for line in lines)

    def encode() -> tuple[str, bytes]:
        if body is None:
            return query.encode(), beacon.body
        out = []
        for i, line in enumerate(lines):
            out.append(line.encode())
            if i < len(seps):
                out.append(seps[i])
        return query.encode(), body.wrap("".join(out).encode())

    return Decoded(docs, encode)
