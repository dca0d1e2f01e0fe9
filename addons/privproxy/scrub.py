"""Apply rules and detectors to values, URLs (nested to any depth), query strings and paths (C2, C4, C8, C10).

Pure functions of (value, policy): no I/O, no mitmproxy. Each change is recorded as a Change so that metrics
count it, `explain` shows it and report-only mode can forward the original while still counting.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from privproxy import detectors, generalize, target, truncate
from privproxy.detectors import Settings as Detectors
from privproxy.fields import ECHO_ACTIONS, ECHO_MIN, REDACTED, Echo, Echoes, Rule, RuleSet, TooMuchWork
from privproxy.percent import quoter, unquote, unquote_plus
from privproxy.pseudonyms import Pseudonymizer
from privproxy.schema_types import CONTROLS, arr, boolean, default_of, obj, string
from privproxy.truncate import Truncation

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

MAX_DEPTH = 8  # URLs nested in parameters deeper than this are redacted whole (fail closed)
UNKNOWN_CHOICES = ("detect", "drop", "keep")
SAFE = "-._~:/[]!$'()*,;@"
quote_safe = quoter(SAFE)  # urllib.parse.quote(text, safe=SAFE)
_URLISH = re.compile(r"^(?:https?:)?//|^/[^\s]*[?/]", re.I)
DEVICE_PREFIX = "$device:"  # mixpanel-browser's anonymous distinct id: `$device:<device id>`
# GA client ids `<random>.<first-visit timestamp>`, and the cookies that wrap them: `GA1.1.<id>`, `fb.1.<id>`
_NUMERIC_ID = re.compile(r"^([A-Za-z]{2,3}\d?\.\d\.)?(\d+)\.(\d+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
# `;`, or a comma before `name=` (RFC 7230 token characters): Scrubber.split_cookies
_COOKIE_SEPARATOR = re.compile(r";|,(?=[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+=)")


@dataclass(frozen=True, slots=True)
class SensitivePath:
    id: str
    pattern: str
    regex: re.Pattern[str]
    replace: str
    controls: tuple[str, ...] = ("C10",)


def sensitive_regex(pattern: str) -> re.Pattern[str]:
    """`/health/**` any depth, `*` one segment; a pattern without wildcards matches itself and below."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    body = "".join(out)
    if "*" not in pattern:
        body = body.rstrip("/") + "(?:/.*)?"
    return re.compile(body, re.I | re.S)  # re.S: a %0A in the path must not end the match early


def any_sensitive(paths: tuple[SensitivePath, ...]) -> re.Pattern[str] | None:
    """All patterns as one alternation: one regex call per URL instead of one per pattern."""
    if not paths:
        return None
    return re.compile("|".join(f"(?P<s{i}>{p.regex.pattern})" for i, p in enumerate(paths)), re.I | re.S)


@dataclass(slots=True)
class Change:
    scope: str
    field: str  # the field's name as sent: shown by `explain`, never a metric label
    rule: str  # rule id, "detector:<name>", "sensitive_path:<id>" or "limit:<what>"
    action: str
    before: str
    after: str | None
    report_only: bool = False


@dataclass(frozen=True, slots=True)
class Scrubber:
    rules: RuleSet
    detectors: Detectors
    sensitive_paths: tuple[SensitivePath, ...]
    pseudonymizer: Pseudonymizer
    truncation: Truncation
    unknown: str = "detect"
    report_only: bool = False
    sensitive_any: re.Pattern[str] | None = field(default=None, compare=False)
    # Per-destination copies (see `to`): never carried over by dataclasses.replace, whose copy has other rules.
    _destinations: dict[str, Scrubber] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensitive_any", any_sensitive(self.sensitive_paths))
        object.__setattr__(self, "_destinations", {})

    def to(self, destination: str) -> Scrubber:
        """The same rules with pseudonyms keyed for one destination: "log" (access logs, filter-log), "origin"
        (cookies the site gets) or a vendor name. A value gets unrelated pseudonyms at two destinations, so
        two vendors, or a vendor and the log, cannot join their records by them (EDPB Guidelines 01/2025 on
        pseudonymisation: one pseudonymisation domain per recipient)."""
        got = self._destinations.get(destination)
        if got is None:
            got = dataclasses.replace(self, pseudonymizer=self.pseudonymizer.for_destination(destination))
            if len(self._destinations) < 64:  # "log", "origin" and the vendors: a small fixed set
                self._destinations[destination] = got
        return got

    # --- single values ----------------------------------------------------------------------------------
    def act(self, action: str, value: Any, name: str, role: str = "", shaped: bool = False) -> Any:
        """The value after `action`; None means the field disappears. The one action engine: URLs, cookies and
        headers (text), and beacon fields (`shaped`: any JSON value, ids pseudonymized in their own shape,
        privproxy.beacon.Walker)."""
        if action == "keep":
            return value
        if action == "drop":
            return None
        if action == "hash":
            if shaped:
                return self.shaped(value, role or name)
            return self.pseudonymizer.pseudonym(value, name) if value else value
        if action == "truncate":
            if not isinstance(value, str):
                return None  # nothing left to keep of a truncated number
            if role == "ip":
                # A field that holds an address: every spelling a collector could read as one (3405803853,
                # 0xcb00714d, 203.0.113.077), not only the dotted quad; anything else in it is no address to keep.
                return truncate.truncate_text(value, self.truncation, numeric=True) or REDACTED
            masked = truncate.truncate_text(value, self.truncation)
            if masked is None:
                masked = generalize.timestamp(value)
            return masked if masked is not None else REDACTED  # cannot tell what it is: fail closed
        if action == "generalize":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(value) - int(value) % 100  # a screen or viewport size, to a 100-pixel bucket
            if not isinstance(value, str):
                return None
            if shaped and value.isdigit() and len(value) <= 6:
                return str(int(value) - int(value) % 100)  # a screen or viewport size sent as text
            if _URLISH.match(value):
                return generalize.path_template(value)
            return generalize.screen(value) or generalize.user_agent(value)
        return REDACTED

    def shaped(self, value: Any, role: str) -> Any:
        """A keyed pseudonym shaped like the original, so vendors that validate id formats still accept it:
        numbers stay numbers, `123.456` GA ids keep their shape, UUIDs stay UUIDs, hex stays hex."""
        text = value if isinstance(value, str) else str(value)
        if text.startswith(DEVICE_PREFIX) and len(text) > len(DEVICE_PREFIX):
            # `$device:<device id>` stays that, with the pseudonym the device id gets in `$device_id`: mixpanel
            # derives the anonymous distinct id from the device id, and its identity merge needs the two to agree.
            return DEVICE_PREFIX + str(self.shaped(text[len(DEVICE_PREFIX):], "device_id"))
        # A visitor's ids come back in every beacon: remembered for the key's period, as its pseudonyms are.
        return self.pseudonymizer.remember(("shaped", role, type(value), text), lambda: self._shape(value, text, role))

    def _shape(self, value: Any, text: str, role: str) -> Any:
        mac = self.pseudonymizer.mac(f"beacon/{role}\x00{text}".encode())
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
        return self.pseudonymizer.pseudonym(text, f"beacon/{role}")

    def _record(self, changes: list[Change] | None, change: Change) -> None:
        if changes is not None:
            changes.append(change)

    def named(self, scope: str, name: str, value: str, changes: list[Change] | None, depth: int = 0) -> str | None:
        """A named field: its rule if one matches, else the unknown-field policy (detectors by default)."""
        rule = self.rule_for(scope, name)
        if rule is not None:
            return self._by_rule(rule, scope, name, value, changes)
        return self._unnamed(scope, name, value, changes, depth)

    def rule_for(self, scope: str, name: str) -> Rule | None:
        rule = self.rules.find(scope, name)
        if rule is None and scope == "referrer":
            rule = self.rules.find("query", name)  # a referrer's parameters are query parameters of another page
        return rule

    def _unnamed(self, scope: str, name: str, value: str, changes: list[Change] | None, depth: int) -> str | None:
        if self.unknown == "keep":
            return value
        if self.unknown == "drop":
            self._record(changes, Change(scope, name, "unknown_fields", "drop", value, None, self.report_only))
            return value if self.report_only else None
        return self.free(scope, name, value, changes, depth)

    def _by_rule(self, rule: Rule, scope: str, name: str, value: str, changes: list[Change] | None) -> str | None:
        after = self.act(rule.action, value, name)
        if after != value:
            ro = self.report_only or rule.report_only
            self._record(changes, Change(scope, name, rule.id, rule.action, value, after, ro))
            return value if ro else after
        return value

    def free(self, scope: str, name: str, value: str, changes: list[Change] | None, depth: int = 0) -> str | None:
        """A value no rule names: nested URLs are scrubbed recursively, everything else goes to the detectors."""
        if not value:
            return value
        if _URLISH.match(value):
            return self.url(value, scope, changes, depth + 1)
        hits = self.detectors.hits(value)
        if not hits:
            return value
        out, pos = [], 0
        for hit in hits:
            action = self.detectors.action(hit.detector)
            found = value[hit.start:hit.end]
            if action == "drop":
                self._record(changes, Change(scope, name, f"detector:{hit.detector}", "drop", value, None,
                                             self.report_only))
                return value if self.report_only else None
            if action == "hash":
                repl = self.pseudonymizer.pseudonym(found, hit.detector)
            elif action == "truncate" and hit.detector == "ip":
                repl = truncate.truncate_text(found, self.truncation) or f"[{hit.detector}]"
            else:
                repl = f"[{hit.detector}]"
            out.append(value[pos:hit.start])
            out.append(repl)
            pos = hit.end
        out.append(value[pos:])
        after = "".join(out)
        if after != value:
            for hit in hits:
                self._record(changes, Change(scope, name, f"detector:{hit.detector}",
                                             self.detectors.action(hit.detector), value, after, self.report_only))
        return value if self.report_only else after

    # --- cookies ------------------------------------------------------------------------------------------
    def cookie_header(self, header: str, changes: list[Change] | None, unknown: bool = False) -> str:
        """A request `Cookie` header with named cookies scrubbed by their rules.

        Unnamed cookies pass unless `unknown` (beacons): a site's own session cookies must keep working, and
        they are opaque random values that the detectors would only mistake for tokens.
        """
        out = []
        for part in self.split_cookies(header):
            name, eq, value = part.partition("=")
            name = name.strip()
            if not eq:
                # A bare token is not a name=value pair: nothing says what it is, so it does not pass.
                self._record(changes, Change("cookie", "", "malformed", "drop", part, None, self.report_only))
                if self.report_only:
                    out.append(part)
                continue
            rule = self.rules.find("cookie", name)
            if rule is not None:
                after = self._by_rule(rule, "cookie", name, value, changes)
            elif unknown:
                after = self.named("cookie", name, value, changes)
            else:
                after = value
            if after is not None:
                out.append(part if after == value else f"{name}={after}")
        return "; ".join(out)

    @staticmethod
    def split_cookies(header: str) -> list[str]:
        """The `name=value` pairs of a Cookie header, stripped, as the most lenient server reads them.

        RFC 6265 §4.2.1 separates cookies with `; `, but servers that follow RFC 2965 (and frameworks that kept
        its parser) split on commas too: to them `a=1, _ga=GA1.1.1.2` is two cookies, the second one `_ga`.
        A comma followed by `name=` is read as a separator, so the rules see every cookie any server would;
        other commas (JSON values, dates) stay inside their value. Callers join the pairs with `; ` only.
        """
        return [p for p in (part.strip() for part in _COOKIE_SEPARATOR.split(header)) if p]

    def set_cookie(self, header: str, changes: list[Change] | None) -> str | None:
        """A response `Set-Cookie`: None when a rule says this cookie is not set (tracking without consent).

        A cookie's value cannot be made non-identifying while the browser still sends it back, so any rule
        other than `keep` means the cookie is not set at all; report-only mode only counts it.
        """
        name = header.split(";", 1)[0].partition("=")[0].strip()
        rule = self.rules.find("set_cookie", name)
        if rule is None or rule.action == "keep":
            return header
        ro = self.report_only or rule.report_only
        self._record(changes, Change("set_cookie", name, rule.id, "drop", header, None, ro))
        return header if ro else None

    # --- URLs ---------------------------------------------------------------------------------------------
    def url(self, url: str, scope: str, changes: list[Change] | None, depth: int = 0) -> str:
        """A full or relative URL with its path, query and fragment scrubbed; nested URLs too."""
        if depth > MAX_DEPTH:
            self._record(changes, Change(scope, "", "limit:depth", "redact", url, REDACTED, False))
            return REDACTED
        if ("&#" in url or "&commat;" in url) and "email" in self.detectors.order:
            url = self._entity_emails(url, scope, changes)
        # A request target (scope "path", not nested) is origin-form, where `//health/x` is the path the origin
        # routes as /health/x (RFC 9112 3.2.1), not a reference to a host `health`.
        prefix, rest = ("", url) if depth == 0 and scope == "path" and url.startswith("/") else \
            split_origin(url, self.truncation)
        path, sep_q, query = rest.partition("?")
        query, sep_f, fragment = query.partition("#") if sep_q else ("", "", "")
        if not sep_q:
            path, sep_f, fragment = path.partition("#")
        new_path, generalized = self.path(path, scope, changes)
        if generalized:
            return prefix + new_path  # a sensitive page: its query and fragment say even more, drop them
        new_query = self.query(query, scope, changes, depth) if sep_q else ""
        new_fragment = self._fragment(fragment, scope, changes, depth) if sep_f else ""
        out = prefix + new_path
        if sep_q and new_query:
            out += "?" + new_query
        if sep_f and new_fragment:
            out += "#" + new_fragment
        return out

    def _entity_emails(self, url: str, scope: str, changes: list[Change] | None) -> str:
        """Emails whose '@' is an HTML entity (`jane&#64;example.com`), replaced before the URL is split: its
        `#` and `&` would cut them in two at the fragment or a parameter, and neither half is an email."""
        spans = list(detectors.entity_emails(url))
        if not spans or self.report_only:
            if spans:
                self._record(changes, Change(scope, "url", "detector:email", "redact", url, url, True))
            return url
        out, pos = [], 0
        for start, end in spans:
            out += (url[pos:start], "[email]")
            pos = end
        after = "".join(out) + url[pos:]
        self._record(changes, Change(scope, "url", "detector:email", "redact", url, after, False))
        return after

    def sensitive(self, path: str) -> SensitivePath | None:
        combined = self.sensitive_any
        m = combined.fullmatch(path) if combined is not None else None
        return self.sensitive_paths[int(m.lastgroup[1:])] if m is not None and m.lastgroup else None

    def path(self, path: str, scope: str, changes: list[Change] | None) -> tuple[str, bool]:
        """(path, generalized?): sensitive pages generalized, matched on the canonical path as the origin routes
        it (privproxy.target); empty and dot segments resolved; `;params` through the query rules; personal
        data in segments masked."""
        canonical = path
        # A plain path is its own canonical path: two C searches instead of a Target for each new path.
        if path.startswith("/") and not target.plain(path):
            try:
                canonical = target.parse(path).path
            except target.TargetError:
                # no server reads it one way only: nothing of it is kept
                self._record(changes, Change(scope, "path", "limit:unreadable_path", "redact", path, REDACTED, False))
                return REDACTED, True
        sp = self.sensitive(canonical)
        if sp is not None:
            self._record(changes, Change(scope, "path", f"sensitive_path:{sp.id}", "generalize", path, sp.replace,
                                         self.report_only))
            return (path, False) if self.report_only else (sp.replace, True)
        # A segment can hold a URL only through an encoded slash; such a URL is redacted whole (its parameters
        # are not parsed in a path), whether or not the detectors would find anything in it.
        encoded_slash = "%2f" in path or "%2F" in path
        if not encoded_slash and not target.needs_resolution(path) \
                and not self.detectors.could_contain(unquote(path, errors="replace") if "%" in path else path):
            return path, False
        segments, trailing = target.raw_segments(path)
        out = []
        for seg, params in segments:
            raw = unquote(seg, errors="replace") if "%" in seg else seg
            # The detectors see decoded text, so the cheap check does too.
            if raw and (self.detectors.could_contain(raw) or (encoded_slash and _URLISH.match(raw))):
                after = self.free("path", "segment", raw, changes, depth=MAX_DEPTH)  # no URL recursion in a segment
                if after is None:
                    after = REDACTED
                if after != raw:
                    seg = quote_safe(after)
            if params:
                # Matrix parameters (`;jsessionid=...`) are parameters: the query rules apply to them.
                kept = [p for p in (self.query(part, scope, changes) for part in params.split(";")) if p]
                seg += "".join(";" + p for p in kept)
            out.append(seg)
        rooted = "/" if path.startswith(("/", "\\")) else ""
        return rooted + "/".join(out) + ("/" if trailing and out else ""), False

    def query(self, query: str, scope: str, changes: list[Change] | None, depth: int = 0) -> str:
        """A query string with each parameter scrubbed; untouched parameters keep their exact bytes. A value a
        rule treated as an identifier is treated the same in every other parameter (fields.Echoes)."""
        if not query:
            return query
        out = []
        sc = "referrer" if scope == "referrer" else "query"
        ids: list[tuple[str, str | None, Rule, bool]] = []  # the identifiers: (value, what it became, rule, ro)
        protected: set[int] = set()  # positions in `out` of the identifiers themselves
        for part in query.split("&"):
            if not part:
                continue
            raw_name, eq, raw_value = part.partition("=")
            name = unquote_param(raw_name)
            value = unquote_param(raw_value)
            rule = self.rule_for(sc, name)
            if rule is None:
                after = self._unnamed(sc, name, value, changes, depth)
            else:
                after = self._by_rule(rule, sc, name, value, changes)
                if rule.action in ECHO_ACTIONS and len(value) >= ECHO_MIN:
                    ro = self.report_only or rule.report_only
                    ids.append((value, self.act(rule.action, value, name) if ro else after, rule, ro))
                    if after is not None:
                        protected.add(len(out))
            if after is None:
                continue
            if after == value:
                out.append(part)
            else:
                out.append(f"{raw_name}{eq or '='}{quote_safe(after)}")
        # Copies are looked for only in the other parameters: a query string of identifiers alone (a Referer's
        # `?email=...`, the common case) needs no search and no index of what to search for.
        if ids and len(protected) < len(out):
            echoes = Echoes(limit=8 * len(query) + 4096)  # a URL's search is bounded by its own length: linear
            for value, after, rule, ro in ids:
                echoes.learn(value, after, rule.id, rule.action, ro)
            if echoes:
                self._echoes(out, protected, echoes, sc, changes)
        return "&".join(out)

    def _echoes(self, out: list[str], protected: set[int], echoes: Echoes, scope: str,
                changes: list[Change] | None) -> None:
        """Copies of the identifiers in the other parameters' names and values (nested URLs included: their
        scrubbed text is searched). A query string built to make that search slow loses its other values."""
        search = echoes.searcher()
        over = False
        for i, part in enumerate(out):
            if i in protected:
                continue
            raw_name, eq, raw_value = part.partition("=")
            name, value = unquote_param(raw_name), unquote_param(raw_value)
            if not over:
                try:
                    new_name = self._echo(search, scope, "[name]", name, changes)
                    new_value = self._echo(search, scope, name, value, changes)
                except TooMuchWork:
                    over = True
                    self._record(changes, Change(scope, name, "limit:echoes", "redact", "", REDACTED, False))
            if over:
                new_name, new_value = name, REDACTED
            if new_name != name or new_value != value:
                out[i] = (f"{quote_safe(new_name) if new_name != name else raw_name}{eq or '='}"
                          f"{quote_safe(new_value) if new_value != value else raw_value}")

    def _echo(self, search: Callable[[str, list[str] | None], tuple[str, list[Echo]] | None], scope: str,
              name: str, text: str, changes: list[Change] | None) -> str:
        got = search(text, None)
        if got is None:
            return text
        after, hits = got
        for e in hits:
            self._record(changes, Change(scope, name, e.rule, e.action, text, after, self.report_only or e.report_only))
        return after

    def _fragment(self, fragment: str, scope: str, changes: list[Change] | None, depth: int) -> str:
        # SPAs and OAuth put parameters in the fragment (#access_token=...): treat `a=b&c=d` like a query.
        if "=" in fragment:
            return self.query(fragment, scope, changes, depth)
        after = self.free(scope, "fragment", unquote(fragment, errors="replace"), changes, depth)
        return "" if after is None else quote_safe(after) if after != unquote(fragment) else fragment


def unquote_param(v: str) -> str:
    return unquote_plus(v, errors="replace") if "%" in v or "+" in v else v


_ORIGIN = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*)(.*)$", re.S)


def split_origin(url: str, t: Truncation) -> tuple[str, str]:
    """('https://host', '/path?q') for absolute URLs; ('', url) for relative ones. Credentials never pass, and a
    host that is an address (in any spelling a browser reads as one: http://3405803853/ is 203.0.113.77 to
    the WHATWG URL parser) is truncated like every other address (C8)."""
    m = _ORIGIN.match(url)
    if not m:
        return "", url
    origin, rest = m.group(1), m.group(2)
    scheme, sep, hostpart = origin.partition("//")
    if "@" in hostpart:  # user:password@host
        hostpart = hostpart.rsplit("@", 1)[1]
    host, port = hostpart, ""
    if host.startswith("["):
        end = host.find("]")
        host, port = (host[1:end], host[end + 1:]) if end > 0 else (host, "")
    elif host.count(":") == 1:
        host, _, p = host.partition(":")
        port = ":" + p
    if host and (host[0].isdigit() or ":" in host):
        masked = truncate.truncate_text(host, t, numeric=True)
        if masked is not None:
            hostpart = (f"[{masked}]" if ":" in masked else masked) + port
    return f"{scheme}{sep}{hostpart}", rest


# --- filters.yaml: `sensitive_paths:`, `unknown_fields:`, `report_only:` ---------------------------------------
SENSITIVE_PATH = obj("A page whose visit alone reveals sensitive information (C10).", {
    "id": string("Short name for metrics and explain."),
    "pattern": string("Path pattern: `*` one segment, `**` any rest.", pattern="^/"),
    "replace": string("What the path becomes in logs and beacons (default: the pattern with ** as *)."),
    "controls": CONTROLS,
}, required=("pattern",))
SENSITIVE_PATHS = arr("Pages generalized in every logged or beaconed URL (C10).", SENSITIVE_PATH)
UNKNOWN_FIELDS = string("Fields no rule names: scan with the detectors, drop, or keep.", enum=UNKNOWN_CHOICES,
                        default=default_of(Scrubber, "unknown"))
REPORT_ONLY = boolean("Count what all rules would change, change nothing.", default_of(Scrubber, "report_only"))


def parse_sensitive_paths(node: Node | None) -> tuple[SensitivePath, ...]:
    if node is None:
        return ()
    out = []
    for n in node.seq():
        m = n.mapping(SENSITIVE_PATH.props)
        pattern = m["pattern"].string() if "pattern" in m else ""
        if not pattern.startswith("/"):
            n.error("a sensitive path needs a `pattern` starting with /", "e.g. pattern: /health/**")
            continue
        sid = m["id"].string() if "id" in m else pattern
        replace = m["replace"].string() if "replace" in m else pattern.replace("**", "*")
        controls = m["controls"].strings() if "controls" in m else default_of(SensitivePath, "controls")
        out.append(SensitivePath(sid, pattern, sensitive_regex(pattern), replace, controls))
    return tuple(out)
