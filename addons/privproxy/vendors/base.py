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

import orjson

from privproxy.percent import quoter, unquote_exact

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
               "unsupported_format", "bad_structure", "ambiguous_body")

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in self.REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


# Why a count of fields: reading a document costs Python work per value, not per byte. 2 MiB of `[0,0,...]` is a
# million values (0.5 s to check their depth, seconds to scrub); 2 MiB of `a=1&` half a million form pairs (1 s to
# parse), of empty lines two million GA4 hits (7 s). Ordinary batches have a value every 25-30 bytes (Segment,
# PostHog, Amplitude SDK traffic), so 65 536 of them is a 1.7 MiB batch; a body with more values or pairs, or more
# than MAX_HIT_LINES hit lines, is refused (too_large) before it is walked (issue 17). privproxy.beacon bounds the
# walk itself (MAX_WORK).
MAX_FIELDS = 65_536
# gtag.js batches up to 25 hits a request and analytics.js 20: a thousand lines is no SDK's, and each line is a
# document whose identifiers every earlier line is searched for again (quadratic in lines, bounded by the budget).
MAX_HIT_LINES = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 512 * 1024
    max_decompressed: int = 2 * 1024 * 1024
    max_depth: int = 32
    max_fields: int = MAX_FIELDS


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
    names: Callable[[str], str | None] | None = None  # how the receiver reads parameter names (`query` only)


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
_quote_name = quoter("[]$.", plus=True)  # urllib.parse.quote_plus(name, safe="[]$.")
_quote_value = quoter("-_.~:/,|$", plus=True)


@dataclass(slots=True)
class Params:
    """An ordered query string or form body; untouched pairs keep their exact bytes when encoded again.

    A pair keeps its bytes only where they provably read back as what was inspected: valid percent-encoding
    of UTF-8, and a name the receiver reads as written (`names`, e.g. PHP's rules for Matomo). Any other pair
    goes out re-encoded from its decoded name and value, so the receiver reads what privproxy read."""

    pairs: list[list[Any]] = field(default_factory=list)  # [raw pair, name, value, changed?]

    @classmethod
    def parse(cls, text: str, names: Callable[[str], str | None] | None = None) -> Params:
        if text.count("&") >= MAX_FIELDS:  # see MAX_FIELDS: refused before a pair is made
            raise CodecError("too_large", f"more than {MAX_FIELDS} parameters")
        p = cls()
        for part in text.split("&"):
            if not part:
                continue
            raw_name, _, raw_value = part.partition("=")
            name, exact_name = unquote_exact(raw_name)
            value, exact_value = unquote_exact(raw_value)
            exact = exact_name and exact_value
            if names is not None:
                read = names(name)
                if read is None:  # the receiver ignores this pair: so does the forwarded request
                    p.pairs.append([part, name, None, True])
                    continue
                exact = exact and read == name
                name = read
            p.pairs.append([part, name, value, not exact])
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
            out.append(f"{_quote_name(name)}={_quote_value(value)}" if changed else raw)
        return "&".join(out)


# --- bodies ---------------------------------------------------------------------------------------------------
GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes, limits: Limits) -> bytes:
    """Every member of a gzip stream, inflated with a bound: RFC 1952 allows several members and Python's and
    Node's zlib inflate them all, so inspecting only the first would forward the rest unread. Bytes after the
    last member (Node fails on them or skips them) are refused; a gzip bomb stops at the limit."""
    out = bytearray()
    rest = data
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(rest, limits.max_decompressed + 1 - len(out))
        except zlib.error as e:
            raise CodecError("bad_gzip", str(e)) from None
        if len(out) > limits.max_decompressed or d.unconsumed_tail:
            raise CodecError("too_large", "decompressed body over the limit")
        if not d.eof:
            raise CodecError("bad_gzip", "truncated gzip stream")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if not rest.startswith(GZIP_MAGIC):
            raise CodecError("ambiguous_body", "bytes after the last gzip member")


def gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@dataclass(slots=True)
class Body:
    """A request body with its transfer wrapping undone; `wrap` puts it back the same way."""

    data: bytes
    gzipped: bool
    json: bool = False  # it starts like a JSON document (receivers that sniff read it as JSON)

    def wrap(self, data: bytes) -> bytes:
        return gzip(data) if self.gzipped else data


_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_UTF8 = frozenset({"", "utf-8", "utf8", "us-ascii", "ascii"})


def media_type(content_type: str) -> tuple[str, str]:
    """('application/json', 'utf-8') from `application/json; charset="UTF-8"`."""
    kind, _, params = content_type.partition(";")
    charset = ""
    for param in params.split(";"):
        k, _, v = param.partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip('"').lower()
    return kind.strip().lower(), charset


def open_body(beacon: Beacon, limits: Limits, gzip_hint: bool = False, json_as_form: bool = False) -> Body:
    """The body, gunzipped when Content-Encoding says so, when a parameter says so (`gzip_hint`), or when it
    starts with the gzip magic bytes and no header says anything (some SDKs send gzip without the header).

    A body its receivers could read in two ways is refused, never guessed at: multipart (PHP reads it as a
    form, privproxy does not decode it), a byte-order mark (JSON.parse fails on it, other readers skip it), a
    charset other than UTF-8, JSON declared as a form (unless the codec reads both, `json_as_form`), a form
    declared as JSON."""
    if len(beacon.body) > limits.max_body:
        raise CodecError("too_large", "body over the limit")
    kind, charset = media_type(beacon.content_type)
    if kind.startswith("multipart/"):
        raise CodecError("unsupported_format", "multipart bodies are not decoded")
    if charset not in _UTF8:
        raise CodecError("unsupported_encoding", f"charset {charset[:20]}")
    enc = beacon.content_encoding.strip().lower()
    if enc in ("", "identity"):
        if beacon.body.startswith(GZIP_MAGIC) or (gzip_hint and beacon.body[:2] == GZIP_MAGIC):
            body = Body(gunzip(beacon.body, limits), True)
        elif gzip_hint:
            raise CodecError("bad_gzip", "compression announced but the body is not gzip")
        else:
            body = Body(beacon.body, False)
    elif enc in ("gzip", "x-gzip"):
        body = Body(gunzip(beacon.body, limits), True)
    else:
        raise CodecError("unsupported_encoding", enc[:20])
    if body.data.startswith(_BOMS):
        raise CodecError("ambiguous_body", "byte-order mark")
    body.json = body.data.lstrip(b" \t\r\n")[:1] in (b"{", b"[")
    if body.json and kind == "application/x-www-form-urlencoded" and not json_as_form:
        raise CodecError("ambiguous_body", "JSON declared as a form")
    if not body.json and body.data.strip() and (kind == "application/json" or kind.endswith("+json")):
        raise CodecError("ambiguous_body", "declared as JSON but it is not")
    return body


def loads(data: bytes | str, limits: Limits) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise CodecError("bad_json", str(e)[:80]) from None
    check_depth(value, limits.max_depth, limits.max_fields)
    return value


def require(data: Any, keys: tuple[str, ...], what: str) -> None:
    """The document is this vendor's: an object holding one of `keys` (or a list of such objects). Another
    vendor's document (an Amplitude batch on PostHog's `/batch/`) would pass through a codec that knows none of
    its fields, so it is refused instead (bad_structure)."""
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(d, dict) and any(k in d for k in keys) for d in items):
        raise CodecError("bad_structure", f"not {what}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def check_depth(value: Any, limit: int, max_values: int = MAX_FIELDS) -> None:
    """No value deeper than `limit` (the root is at 0), no more than `max_values` values in all (MAX_FIELDS).
    Walked a level at a time, containers only: stacking every value cost half a second for a million of them,
    and a (container, depth) pair per container was most of a beacon's cost here. A document both too deep and
    too large is refused for whichever its levels reach first."""
    if not isinstance(value, (dict, list)):
        return
    count, depth, level = 1, 0, [value]
    while level:
        children = [v.values() if isinstance(v, dict) else v for v in level]
        n = sum(map(len, children))
        if not n:
            return
        if depth >= limit:
            raise CodecError("too_deep", f"nesting deeper than {limit}")
        count += n
        if count > max_values:
            raise CodecError("too_large", f"more than {max_values} values")
        level = [x for c in children for x in c if isinstance(x, (dict, list))]
        depth += 1


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
        if body.json:
            raise CodecError("ambiguous_body", "a JSON body where a form belongs")
        form = Params.parse(text_of(body.data))
        docs.append(Doc(form, classify))

    def encode() -> tuple[str, bytes]:
        new_body = beacon.body
        if form is not None and body is not None:
            new_body = body.wrap(form.encode().encode())
        return query.encode(), new_body

    return Decoded(docs, encode)


_LINE_BREAK = re.compile(r"(\r?\n)")


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
        if body.json:
            raise CodecError("ambiguous_body", "a JSON body where hit lines belong")
        text = text_of(body.data)
        if "\r" in text.replace("\r\n", ""):
            raise CodecError("ambiguous_body", "a bare CR: a line break to some readers, not to others")
        if text.count("\n") >= MAX_HIT_LINES:  # each line is a document to parse, walk and search again
            raise CodecError("too_large", f"more than {MAX_HIT_LINES} hit lines")
        for i, part in enumerate(_LINE_BREAK.split(text)):
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
