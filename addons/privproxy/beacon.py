"""Scrub an analytics beacon: the codec decodes, the roles and rules decide, the codec re-encodes (C4, C6, C8, C13).

Without member consent every identifier a vendor defines is pseudonymized, truncated, generalized or dropped
as `beacons.roles` says; fields the codec does not know are classified by name and scanned by the detectors,
and counted per vendor so operators can write rules for them. A beacon that cannot be decoded is never
forwarded with its identifiers: the caller answers it itself (fail closed).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from privproxy.beacons import Settings
from privproxy.fields import (ECHO_ACTIONS, ECHO_MIN, ECHO_ROLES, MIN_NORMALIZED, REDACTED, Echoes, TooMuchWork,
                              normalize)
from privproxy.scrub import DEVICE_PREFIX, Change, Scrubber
from privproxy.vendors.base import (CONTACT_NAMES, Beacon, Classifier, CodecError, Codec, Limits, Nested, Params,
                                    b64decode, b64encode, dumps, loads)


# Why a beacon (or a field inside it) was not forwarded: the decoder's reasons, a body over the size limit,
# and a bug in privproxy itself (never forwarded either).
FAILURE_REASONS = CodecError.REASONS + ("internal_error", "bot")  # bot: beacons.bots: drop

# The bound on one beacon's cost (issue 17). Linear is not enough at the limits: scrubbing runs on the proxy's
# one event loop, and 2 MiB of tiny values or hit lines took 4-17 s, during which no other request was answered.
# So the Walker counts its work on the beacon's identifier-echo meter (fields.Echoes.spend): FIELD_WORK per value
# it visits (once more for a name new to the request: its lookups miss every memo), a few units per character the
# detectors, the URL rules or a nested decoder read, and the echo search's own units. A beacon that needs more
# than MAX_WORK is not forwarded (too_large, counted), as one whose echo search alone went over. Measured with
# bench/pathological.py on the 2-core test machine: a unit costs 0.03-0.12 us whatever the shape, so a beacon
# stops within some 0.7 s; ordinary SDK batches of 480 KB (Segment, PostHog, Amplitude, recorded) need 3.6-4M.
FIELD_WORK = 160
SLOT_WORK = 32
MAX_WORK = 6_000_000


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
    unclassified_names: list[str] = field(default_factory=list)  # their names (a few), for explain
    denied: bool = False  # the beacon's own consent signal refused identification
    field_errors: list[str] = field(default_factory=list)  # nested fields dropped because they did not decode
    echoes: Echoes | None = None  # the identifiers it carried and what each became, for its headers (Referer)


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
        walker.settle()  # once, over every document: each hit line searching all earlier ones would be quadratic
        # What goes out is the encoding of what was inspected, never the bytes as sent: a duplicate JSON key, a
        # second spelling of a name or an odd escape would otherwise reach the vendor unread.
        query, body = decoded.encode()
    except CodecError as e:
        return Result(codec.name, False, "", b"", reason=e.reason)
    except Exception:  # noqa: BLE001 - a codec bug: the beacon is not forwarded, and the caller counts it
        return Result(codec.name, False, "", b"", reason="internal_error")
    return Result(codec.name, True, query, body, walker.changed, unclassified=walker.unclassified,
                  unclassified_names=walker.unclassified_names, denied=decoded.denied,
                  field_errors=walker.field_errors, echoes=walker.echoes if walker.echoes else None)


def cookie_header(header: str, scrubber: Scrubber, settings: Settings, changes: list[Change] | None) -> str:
    """The vendor's own cookies (already selected) without consent: by the cookie rules, and the ones no rule
    names as visitor identifiers (`client_id` role), which is what a vendor collector cookie is."""
    out = []
    walker = Walker(scrubber, settings.roles, settings.limits, changes)
    for part in Scrubber.split_cookies(header):
        name, eq, value = part.partition("=")
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


# Contact names in any spelling (`firstName`, `first-name`, `E_Mail`); short ones (`em`, `fn`, `tel`) only
# as spelled, for the reason fields.MIN_NORMALIZED gives.
_CONTACT_NORMALIZED = frozenset(n for n in map(normalize, CONTACT_NAMES) if len(n) >= MIN_NORMALIZED)


def is_contact_name(name: str) -> bool:
    # Property names repeat in every event of a batch: cached, but only short ones, so a megabyte of names
    # cannot fill the cache's memory.
    return _is_contact_name(name) if len(name) <= 256 else _contact_name(name)


def _contact_name(name: str) -> bool:
    if name in CONTACT_NAMES:
        return True
    norm = normalize(name)
    return len(norm) >= MIN_NORMALIZED and norm in _CONTACT_NORMALIZED


_is_contact_name = functools.lru_cache(maxsize=4096)(_contact_name)


# Values of IP-override fields that name no address but tell the collector to take the address of the upload
# request (Amplitude's "$remote"): behind the proxy that is the proxy's address, so they pass as they are;
# replacing them would make the collector refuse the event.
IP_DIRECTIVES = frozenset({"$remote"})


@dataclass(slots=True, eq=False)
class _Slot:
    """Where a value stands in a decoded document, for replacing an identifier's copy in it later."""

    box: Any  # the Params, dict or list holding it
    key: Any  # pair index, key or position
    value: Any  # the value standing there
    name: str
    inner: _Inner | None  # the nested document it belongs to, encoded again when it changes
    forms: list[str] | None = None  # Echoes.forms of the value, kept for the next search
    b64: str | None = None  # the value decoded as base64 text ("" when it is not)


@dataclass(slots=True, eq=False)
class _Inner:
    """A nested document (base64 JSON, JSON or a query string in a field) and how it is written back."""

    data: Any
    encode: Callable[[Any], str]
    parent: _Inner | None
    at: _Slot | None = None  # where its encoded text stands
    dirty: bool = False


class Walker:
    """Applies roles, rules and detectors to every field of a decoded beacon, editing it in place.

    Identifier echoes (fields.Echoes): every value treated as an identifier is learned, every other string is
    remembered with its place (plain and consent fields are not: they are structure and signals), and at the
    end of each document every remembered value is searched for the identifiers learned so far, so a copy
    found before its identifier (`context` before `userId`, event 1 before event 2) is replaced too.
    """

    def __init__(self, scrubber: Scrubber, roles: dict[str, str], limits: Limits,
                 changes: list[Change] | None) -> None:
        self.s = scrubber
        self.roles = roles
        self.limits = limits
        # Identifiers inside URLs are learned from the scrubber's changes, so there always is a list.
        self.changes = changes if changes is not None else []
        self.changed = False
        self.unclassified = 0
        self.unclassified_names: list[str] = []
        self.field_errors: list[str] = []
        self.echoes = Echoes(limit=MAX_WORK)  # the beacon's one work meter (MAX_WORK), echo search included
        # Counts toward MAX_WORK and raises TooMuchWork past it: the meter's own method, called for every field.
        self.work: Callable[[int], None] = self.echoes.spend
        self.names: set[str] = set()  # field names seen: a new one costs more (FIELD_WORK)
        self.slots: list[_Slot] = []
        self.inners: list[_Inner] = []  # innermost first: encoded again in this order
        self.at: tuple[Any, Any] | None = None  # where the value being scrubbed stands
        self.inner: _Inner | None = None  # the nested document being scrubbed
        self.settled = 0  # identifiers learned when the remembered values were last searched
        self.settled_slots = 0  # values remembered by then

    def doc(self, data: Any, classify: Classifier, path: tuple[str, ...] = ()) -> None:
        """One document of the beacon; `settle` then replaces the copies of the identifiers of all of them."""
        try:
            self.work(FIELD_WORK)
            self._doc(data, classify, path)
        except TooMuchWork:
            raise CodecError("too_large", "more work than one beacon may cost (MAX_WORK)") from None

    def _doc(self, data: Any, classify: Classifier, path: tuple[str, ...] = ()) -> None:
        if isinstance(data, Params):
            self.params(data, classify, path)
        elif isinstance(data, dict):
            self.mapping(data, classify, path)
        elif isinstance(data, list):
            for i, item in enumerate(data):
                self.work(FIELD_WORK)
                if isinstance(item, (dict, list)):
                    self._doc(item, classify, path)
                    continue
                self.at = (data, i)
                after = self.field(classify, path, path[-1] if path else "", item)
                if after is _DROP:
                    data[i] = None  # keeps the positions of a list the vendor may read by index
                    self.changed = True
                elif after is not item:
                    data[i] = after
                    self.changed = True

    def params(self, p: Params, classify: Classifier, path: tuple[str, ...]) -> None:
        work, names = self.work, self.names
        for i, pair in enumerate(p.pairs):
            name, value = pair[1], pair[2]
            if name not in names:
                names.add(name)
                work(2 * FIELD_WORK + len(name))
            else:
                work(FIELD_WORK)
            if value is None:
                continue
            self.at = (p, i)
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
        work, names = self.work, self.names
        for key in list(d):
            if key not in names:  # a name's first lookups miss every memo: rules, contact names, spellings
                names.add(key)
                work(2 * FIELD_WORK + len(key))
            else:
                work(FIELD_WORK + len(key))
            value = d[key]
            self.at = (d, key)
            name = key if type(key) is str else str(key)
            after = each(classify, path + (name,), name, value)
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
            if rule is not None:
                if isinstance(value, (dict, list)):
                    return self.container(rule.action, classify, path, name, value, rule.id)
                return self.apply(rule.action, name, value, rule.id, rule.report_only)
            if self.name_leaks(name):
                return self.apply("drop", "[name]", value, "detector:name")
            if isinstance(value, (dict, list)):
                self._doc(value, classify, path)
                return value
            return self.unknown(name, value)
        if isinstance(value, (dict, list)):
            if role == "url":  # a URL sent as a list or an object: every string inside is one
                return self._every(value, lambda v: self.by_role("url", name, v))
            action = "keep" if role in ("keep", "plain", "consent") else self.roles.get(role, "drop")
            return self.container(action, classify, path, name, value, f"role:{role}", role)
        return self.by_role(role, name, value)

    def container(self, action: str, classify: Classifier, path: tuple[str, ...], name: str, value: Any,
                  rule: str, role: str = "") -> Any:
        if action == "keep":
            self._doc(value, classify, path)
            return value
        if action in ("drop", "redact"):
            return self.apply("drop", name, value, rule, role=role)
        # An id sent as an object or a list where a string belongs (`"userId": {"id": ...}`,
        # `"distinct_id": [...]`): every value inside, at any depth, is that id and gets its action.
        return self._every(value, lambda v: self.apply(action, name, v, rule, role=role))

    def _every(self, value: Any, fn: Callable[[Any], Any]) -> Any:
        """`value` with `fn` applied to every number and string inside it, edited in place."""
        if isinstance(value, (dict, list)):
            for k in list(value) if isinstance(value, dict) else range(len(value)):
                self.work(FIELD_WORK)
                v = value[k]
                self.at = (value, k)
                after = self._every(v, fn)
                if after is _DROP and isinstance(value, dict):
                    del value[k]
                elif after is not v:
                    value[k] = None if after is _DROP else after  # a list keeps its positions
                else:
                    continue
                self.changed = True
            return value
        if value is None or isinstance(value, bool):
            return value
        return fn(value)

    def by_role(self, role: str, name: str, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if role == "url":
            if not isinstance(value, str) or not value:
                return value
            self.work(FIELD_WORK + 6 * len(value))  # parsed, each parameter scrubbed, and built again
            mark = len(self.changes)
            after = self.s.url(value, "body", self.changes)
            self._learn_changes(mark)
            return self._remember(name, value if self.s.report_only else after)
        if role in ("keep", "plain", "consent"):
            # Known to be non-identifying, but a buggy or hostile sender can put anything anywhere. Plain and
            # consent values are structure and signals: an identifier's copy is not looked for in them.
            return self.detect(name, value, echo=role == "keep")
        return self.apply(self.roles.get(role, "drop"), name, value, f"role:{role}", role=role)

    def props(self, classify: Classifier, path: tuple[str, ...], value: Any) -> Any:
        """Custom properties and traits: every name is the customer's own, so each is classified here."""
        if isinstance(value, dict):
            self.mapping(value, classify, path, self.prop)
            return value
        if isinstance(value, list):
            for i, v in enumerate(value):
                self.work(FIELD_WORK)
                self.at = (value, i)
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
        if is_contact_name(norm) or is_contact_name(base):
            if isinstance(value, (dict, list)):
                return self.container(self.roles["contact"], classify, path, name, value, "role:contact", "contact")
            return self.apply(self.roles["contact"], name, value, "role:contact", role="contact")
        rule = self.s.rules.find("query", norm) or self.s.rules.find("query", base)  # gclid, email, uid...
        if rule is not None:
            if isinstance(value, (dict, list)):
                return self.container(rule.action, classify, path, name, value, rule.id)
            return self.apply(rule.action, name, value, rule.id, rule.report_only)
        if self.name_leaks(name):
            return self.apply("drop", "[name]", value, "detector:name")
        if isinstance(value, (dict, list)):
            return self.props(classify, path, value)
        self.unknown_name(name)
        return self.detect(name, value)

    def name_leaks(self, name: str) -> bool:
        """Custom names are the sender's choice too: a key that is an email is personal data itself."""
        self.work(2 * len(name))
        return bool(self.s.detectors.hits(name))

    def unknown_name(self, name: str) -> None:
        """Counted for the metric; the names (a few, for `explain`: the tuning signal) kept, never values."""
        self.unclassified += 1
        if len(self.unclassified_names) < 64 and name not in self.unclassified_names:
            self.unclassified_names.append(name)

    def unknown(self, name: str, value: Any) -> Any:
        self.unknown_name(name)
        if self.s.unknown == "keep":
            return self._remember(name, value)
        if self.s.unknown == "drop":
            return self.apply("drop", name, value, "unknown_fields")
        return self.detect(name, value)

    def detect(self, name: str, value: Any, echo: bool = True) -> Any:
        if not isinstance(value, str) or not value:
            return self._remember(name, value) if echo else value
        self.work(6 * len(value))  # the detectors (and the URL rules when it is one), the echo search's forms
        mark = len(self.changes)
        after = self.s.free("body", name, value, self.changes)
        if len(self.changes) > mark:
            self._learn_changes(mark)  # a URL in a free-text field: the identifiers the URL rules found
        if after is None:
            return _DROP
        if after == value and len(value) >= 16 and _B64ISH.fullmatch(value) and self._b64_leaks(value):
            self.changes.append(Change("body", name, "detector:base64", "redact", value, REDACTED,
                                       self.s.report_only))
            return value if self.s.report_only else REDACTED
        return self._remember(name, after) if echo else after

    def _b64_leaks(self, value: str) -> bool:
        """An unknown field holding base64 (JSON, a query string...) that decodes to personal data."""
        text = _b64_text(value)
        return text is not None and self.s.detectors.could_contain(text) and bool(self.s.detectors.scan(text))

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
        after: Any = self.s.act(action, value, name, role, shaped=True)
        if after is None:
            after = _DROP
        if after is not value and after != value:
            before = value if isinstance(value, str) else dumps(value).decode()
            shown = None if after is _DROP else after if isinstance(after, str) else str(after)
            self.changes.append(Change("body", name, rule, action, before, shown, ro))
            if action in ECHO_ACTIONS and (role in ECHO_ROLES if role else rule in self.s.rules.ids):
                self._learn(value, after, rule, action, ro)
            if ro:
                return value
        return after

    # --- identifier echoes ------------------------------------------------------------------------------
    def _learn(self, value: Any, after: Any, rule: str, action: str, ro: bool) -> None:
        """`value` was treated as an identifier and became `after`: its copies will become the same."""
        if isinstance(value, (dict, list)):  # an id sent as an object, dropped whole: every value inside
            for v in value.values() if isinstance(value, dict) else value:
                self._learn(v, _DROP, rule, action, ro)
            return
        if value is None or isinstance(value, bool) or isinstance(value, float):
            return
        text = value if isinstance(value, str) else str(value)
        shown = None if after is _DROP else after if isinstance(after, str) else str(after)
        self.echoes.learn(text, shown, rule, action, ro)
        if text.startswith(DEVICE_PREFIX):  # mixpanel's `$device:<device id>`: the device id alone is the same id
            tail = shown[len(DEVICE_PREFIX):] if shown is not None and shown.startswith(DEVICE_PREFIX) else None
            self.echoes.learn(text[len(DEVICE_PREFIX):], tail, rule, action, ro)

    def _learn_changes(self, mark: int) -> None:
        """The identifiers the scrubber's rules found (inside a URL) since `mark`."""
        ids = self.s.rules.ids
        for c in self.changes[mark:]:
            if c.action in ECHO_ACTIONS and c.rule in ids and c.before:
                self.echoes.learn(c.before, c.after, c.rule, c.action, c.report_only)

    def _remember(self, name: str, value: Any) -> Any:
        """`value` stays where it stands (self.at): checked for identifiers' copies when the document ends."""
        if self.at is not None and (isinstance(value, str) and len(value) >= ECHO_MIN or
                                    isinstance(value, int) and not isinstance(value, bool) and value >= 10 ** 7):
            box, key = self.at
            self.slots.append(_Slot(box, key, value, name, self.inner))
        return value

    def settle(self) -> None:
        """Copies of identifiers in every value remembered so far, replaced like the identifiers themselves;
        the nested documents they stand in are encoded again, innermost first."""
        n = len(self.echoes)
        if not n:
            return
        try:
            # Values searched before: only for the identifiers learned since. Values remembered since: for all.
            if n > self.settled:
                self._search(itertools.islice(self.slots, self.settled_slots), self.settled)
            self._search(itertools.islice(self.slots, self.settled_slots, None), 0)
        except TooMuchWork:
            raise CodecError("too_large", "more identifier copies to search than the limit allows") from None
        self.settled, self.settled_slots = n, len(self.slots)
        for inner in self.inners:
            if inner.dirty:
                inner.dirty = False
                if inner.at is not None and self._put(inner.at, inner.encode(inner.data)) \
                        and inner.parent is not None:
                    inner.parent.dirty = True

    def _search(self, slots: Iterable[_Slot], since: int) -> None:
        search = self.echoes.searcher(since)
        for slot in slots:
            # Each document searches every value remembered before it again, for the identifiers it brought:
            # a batch of D hits costs D * D / 2 of these, so each is counted (some microseconds, the echo
            # search's own units count only the text).
            self.work(SLOT_WORK)
            number = not isinstance(slot.value, str)
            text = str(slot.value) if number else slot.value
            if slot.forms is None:
                slot.forms = [text] if number else self.echoes.forms(text)
            got = search(text, slot.forms)
            if got is None and not number:
                if slot.b64 is None:  # base64 no codec decodes (a blob in a custom property)
                    slot.b64 = _b64_text(text) or "" if len(text) >= 16 and _B64ISH.fullmatch(text) else ""
                inside = search(slot.b64, None) if slot.b64 else None
                if inside is not None:  # a copy inside redacts it whole
                    got = (text if all(e.report_only for e in inside[1]) else REDACTED, inside[1])
            if got is None or (number and got[1][0].value != text):  # a number is one only when equal
                continue
            after, hits = got
            for e in hits:
                self.changes.append(Change("body", slot.name, e.rule, e.action, text, after,
                                           self.s.report_only or e.report_only))
            if after != text and not self.s.report_only:
                new = int(after) if number and after.isdigit() else after
                if self._put(slot, new) and slot.inner is not None:
                    slot.inner.dirty = True

    def _put(self, slot: _Slot, new: Any) -> bool:
        """`new` where `slot` stands; False when its value is no longer there (dropped meanwhile)."""
        box, key = slot.box, slot.key
        if isinstance(box, Params):
            if key >= len(box.pairs) or box.pairs[key][2] != slot.value:
                return False
            box.set(key, new if isinstance(new, str) else str(new))
        elif isinstance(box, dict):
            if key not in box or box[key] != slot.value:
                return False
            box[key] = new
        else:
            if not (key < len(box) and box[key] is slot.value):
                key = next((i for i, v in enumerate(box) if v is slot.value), None)  # a list compacted since
                if key is None:
                    return False
            box[key] = new
        slot.value, slot.forms, slot.b64 = new, None, None
        self.changed = True
        return True

    def nested(self, nested: Nested, path: tuple[str, ...], name: str, value: Any) -> Any:
        """A document inside a field (base64 JSON contexts, JSON strings, query strings): decoded, scrubbed
        and encoded the same way; a field that does not decode is dropped (it could hold anything)."""
        if isinstance(value, list):
            items = []
            mark = len(self.inners)
            for i, v in enumerate(value):
                self.work(FIELD_WORK)
                self.at = (value, i)
                items.append(self.nested(nested, path, name, v))
            if any(a is not b for a, b in zip(items, value, strict=True)):
                value[:] = [v for v in items if v is not _DROP]  # in place: places remembered inside stay valid
                self.changed = True
                if len(value) < len(items):
                    # The documents after a dropped one moved up: their places are corrected here, once. Found
                    # again by a scan of the list in _put, each one cost a pass over the list: a list of 10 000
                    # contexts after an undecodable one was quadratic (issue 17).
                    moved = list(itertools.accumulate(v is not _DROP for v in items))
                    for inner in self.inners[mark:]:
                        if inner.at is not None and inner.at.box is value:
                            inner.at.key = moved[inner.at.key] - 1
            return value
        if not isinstance(value, str):
            if isinstance(value, dict):
                self._doc(value, nested.classify, ())
            return value
        if not value:
            return value
        self.work(FIELD_WORK + 2 * len(value))  # decoded, walked (each value counted there), encoded again
        try:
            data: Any
            encode: Callable[[Any], str]
            if nested.encoding == "query":
                lead = "?" if value.startswith("?") else ""
                data = Params.parse(value[1:] if lead else value, names=nested.names)
                encode = lambda doc: lead + doc.encode()  # noqa: E731
            elif nested.encoding == "attrs":
                data, encode = attrs_parse(value), attrs_encode
            elif nested.encoding == "json":
                data = loads(value, self.limits)
                encode = lambda doc: dumps(doc).decode()  # noqa: E731
            else:
                raw, urlsafe = b64decode(value)
                data = loads(raw, self.limits)
                encode = lambda doc: b64encode(dumps(doc), urlsafe, value.endswith("="))  # noqa: E731
            return self._inner(nested.classify, name, value, data, encode)
        except CodecError as e:
            self.field_errors.append(e.reason)
            self.changes.append(Change("body", name, f"undecodable:{e.reason}", "drop", value[:64], None))
            return _DROP

    def _inner(self, classify: Classifier, name: str, value: str, data: Any, encode: Callable[[Any], str]) -> Any:
        """The decoded document `data` of the field `value` scrubbed, and encoded again when it changed. It is
        remembered with its place, to be encoded again when an identifier's copy is replaced in it later."""
        at, parent = self.at, self.inner
        inner = _Inner(data, encode, parent)
        self.inner = inner
        try:
            if isinstance(data, (Params, dict, list)):
                out = self._scrub_inner(data, classify)
                result = value if out is None else encode(out)
            else:  # a bare JSON scalar where a document belongs
                box = [data]
                inner.data = box
                inner.encode = lambda b: encode(b[0])
                self.at = (box, 0)
                after = self.detect(name, data)
                if after is _DROP:
                    return _DROP
                box[0] = after
                result = value if after == data else encode(after)
        finally:
            self.inner = parent
        if at is not None:
            inner.at = _Slot(at[0], at[1], result, name, parent)
        self.inners.append(inner)
        return result

    def _scrub_inner(self, data: Any, classify: Classifier) -> Any:
        before = self.changed
        self.changed = False
        self._doc(data, classify, ())
        now, self.changed = self.changed, before or self.changed
        return data if now else None


def _b64_text(value: str) -> str | None:
    try:
        return b64decode(value)[0].decode("utf-8")
    except (CodecError, UnicodeDecodeError):
        return None


class _Drop:
    def __repr__(self) -> str:
        return "<drop>"


_DROP: Any = _Drop()

# `name="value"` attribute lists, as posthog-js writes `$elements_chain` (elementsToString: `tag.class:` then
# the attributes sorted by name, each value with its quotes escaped as `\"`, elements joined by `;`).
# A name starts only where no name character precedes it, and the value is matched possessively: tried at every
# position of a run of name characters (or of an unclosed value), the pattern reread the rest of the run from each,
# and 64 KB of `a` took seconds, 512 KB hours (issue 17). A match can only start at a run's start or end at the
# first unescaped quote anyway, so the spans are the same (tests/unit/test_linear_time.py checks both).
_ATTR = re.compile(r'(?<![A-Za-z0-9_-])([A-Za-z0-9_-]+)="((?:[^"\\]++|\\.)*+)"', re.S)


def attrs_parse(text: str) -> Params:
    """Every quoted attribute as a pair named after it; the text around them (tags, classes, `;`) as pairs
    named "" so the detectors and the echo search see it too. Untouched pairs keep their exact text."""
    p = Params()
    parts = _ATTR.split(text)
    for i in range(0, len(parts), 3):
        if parts[i]:
            p.pairs.append([parts[i], "", parts[i], False])
        if i + 2 < len(parts):
            key, raw = parts[i + 1], parts[i + 2]
            p.pairs.append([f'{key}="{raw}"', key, raw.replace('\\"', '"'), False])
    return p


def attrs_encode(p: Params) -> str:
    out = []
    for raw, key, value, changed in p.pairs:
        if not changed:
            out.append(raw)
        elif value is not None:
            out.append(f'{key}="{value.replace(chr(34), chr(92) + chr(34))}"' if key else value)
    return "".join(out)

_B64ISH = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
