"""What the proxy does to one request, field by field: the engine behind `privproxy explain` (C8, C9, C10).

It runs the proxy's own pipeline (begin, own_answer, forward_fields, forward_beacon, log_record) on plain data,
so what it prints is what the running proxy forwards and logs: HAR files, mitmproxy flow dumps and a bare URL
all go through the code the proxy runs. tests/mitm/test_explain_matches_proxy.py holds the two equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from privproxy import gateway, pipeline, script_cache
from privproxy.access_log.record import LogRecord
from privproxy.consent import decision as consent
from privproxy.outcome import Outcome
from privproxy.pipeline import BeaconForward, FlowState, RequestView
from privproxy.policy import Policy
from privproxy.scrub import Change, unquote_param

# Stands in for the visitor's address when none is given: the fields that depend on it are then reported as
# unknown (None), never as this address's.
PLACEHOLDER_CLIENT = "192.0.2.1"  # TEST-NET-1 (RFC 5737)
VARYING_HEADERS = frozenset({"x-request-id"})  # a new value on every request


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as a client sends it (and the Set-Cookie headers of its response, when known)."""

    method: str
    url: str  # absolute (https://host/path?query) or a target (/path?query)
    headers: tuple[tuple[str, str], ...] = ()
    set_cookies: tuple[str, ...] = ()
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The request as it leaves the proxy for the origin (or a vendor's collector)."""

    target: str
    headers: tuple[tuple[str, str | None], ...]  # None: a value that differs on every request or visitor
    body: bytes


@dataclass(slots=True)
class Explanation:
    sample: Sample
    state: FlowState
    forwarded: Forwarded | None  # None: the proxy answers itself
    answered: pipeline.Answer | None  # the proxy's own answer (redirect, refusal, a beacon it cannot decode)
    record: LogRecord  # status 0 and bytes None where the origin decides them
    set_cookies_kept: tuple[str, ...]
    client_known: bool
    beacon_out: BeaconForward | None = None
    kept: list[tuple[str, str]] = field(default_factory=list)  # (scope, name) of fields that passed unchanged
    unclassified: list[tuple[str, str]] = field(default_factory=list)  # (scope, name) no rule or codec knows

    @property
    def changes(self) -> list[Change]:
        return self.state.changes

    @property
    def consent(self) -> consent.Decision:
        return self.state.decision

    @property
    def logged_path(self) -> str:
        return self.record.path

    @property
    def logged_referrer(self) -> str:
        return self.record.referrer

    @property
    def logged_user_agent(self) -> str:
        return self.record.user_agent

    @property
    def origin_cookie(self) -> str | None:
        """The Cookie the origin (or vendor) gets; None when none is sent, "" when the proxy answers itself."""
        if self.forwarded is None:
            return None
        cookies = [v for k, v in self.forwarded.headers if k.lower() == "cookie" and v is not None]
        return "; ".join(cookies) if cookies else ("" if self.sample.header("cookie") else None)

    @property
    def vendor(self) -> str:
        return self.state.codec.name if self.state.codec is not None else ""

    @property
    def beacon(self) -> str:
        """What the vendor gets: "scrubbed", "unchanged", "as sent (member consent)" or why not forwarded."""
        if self.beacon_out is None:
            return ""
        r = self.beacon_out.result
        if not r.forward:
            return f"not forwarded: answered {r.status} ({r.reason})"
        return "scrubbed" if r.changed else "as sent (member consent)" if self.consent.analytics else "unchanged"

    @property
    def beacon_unclassified(self) -> int:
        return self.beacon_out.result.unclassified if self.beacon_out is not None else 0


def har_samples(har: dict[str, Any]) -> Iterator[Sample]:
    """The requests of a HAR file (browser devtools' export), with their cookies and Set-Cookie headers."""
    for entry in har["log"]["entries"]:
        req, resp = entry["request"], entry.get("response") or {}
        headers = tuple((h["name"], h["value"]) for h in req.get("headers", []))
        if not any(k.lower() == "cookie" for k, _ in headers) and req.get("cookies"):
            headers += (("Cookie", "; ".join(f"{c['name']}={c['value']}" for c in req["cookies"])),)
        set_cookies = tuple(h["value"] for h in resp.get("headers", []) if h["name"].lower() == "set-cookie")
        post = (req.get("postData") or {}).get("text") or ""
        yield Sample(req.get("method", "GET"), req["url"], headers, set_cookies, post.encode())


def view_of(sample: Sample, client: str = "") -> RequestView:
    """The RequestView the proxy builds for this request (mitm.flowview.view), as an HTTP/1.1 client sends it:
    with a Host field (from the URL when the sample has none) and its Content-Length."""
    scheme, sep, rest = sample.url.partition("://")
    if sep:  # https://authority/target: the target as the client would send it, byte for byte
        cut = min((i for i in (rest.find(c) for c in "/?#\\") if i >= 0), default=len(rest))
        authority, target = rest[:cut], rest[cut:].partition("#")[0]
        target = target if target.startswith(("/", "\\")) else "/" + target
        tls = scheme.lower() == "https"
    else:
        authority, target, tls = "", sample.url or "/", True
    fields = [(k, v) for k, v in sample.headers if not k.startswith(":")]
    pseudo = {k.lower(): v for k, v in sample.headers if k.startswith(":")}
    authority = pseudo.get(":authority", authority)
    if not any(k.lower() == "host" for k, _ in fields) and authority:
        fields.insert(0, ("Host", authority))
    if sample.body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in fields):
        fields.append(("Content-Length", str(len(sample.body))))
    index: dict[str, list[str]] = {}
    for k, v in fields:
        index.setdefault(k.lower(), []).append(v)
    hosts = index.get("host", [])
    return RequestView(peer=client or PLACEHOLDER_CLIENT, tls=tls, method=sample.method,
                       host=hosts[0] if hosts else authority, path=pseudo.get(":path", target),
                       get_all=lambda name: index.get(name, []), fields=tuple(fields))


def explain(policy: Policy, sample: Sample, country: str = "", client: str = "") -> Explanation:
    """Run the proxy's pipeline on one sample. `client` is the visitor's address as the proxy would see it;
    without one, what depends on it (X-Forwarded-For, the record's client) is reported as unknown."""
    view = view_of(sample, client)
    state = pipeline.begin(view, policy, None, country)
    own = pipeline.own_answer(state)
    forwarded: Forwarded | None = None
    beacon_out: BeaconForward | None = None
    if own is None and state.codec is not None:
        beacon_out = pipeline.forward_beacon(state, view, sample.body)
        r = beacon_out.result
        if r.forward and state.forward is not None:  # beacons.forward: straight to the vendor (mitm.gateway)
            forwarded, own = _to_vendor(state, view, beacon_out, bool(client))
        elif r.forward:
            forwarded = Forwarded(beacon_out.target, _shown(beacon_out.fields, client), beacon_out.body)
        else:
            own = pipeline.Answer(r.status, Outcome.NOT_FORWARDED, (("cache-control", "no-store"),))
    elif own is None and state.script is not None:  # beacons.scripts: fetched without anything of the visitor
        forwarded = Forwarded(state.script.url, script_cache.REQUEST_HEADERS, b"")
    elif own is None and gateway.serves_gpc_json(state, view.method):
        own = pipeline.Answer(200, Outcome.FORWARDED, (("content-type", "application/json"),))
    elif own is None:
        forwarded = Forwarded(state.forward_target or view.path, _shown(pipeline.forward_fields(state, view.fields),
                                                                        client), sample.body)
    kept_sc = tuple(pipeline.scrub_set_cookies(state, list(sample.set_cookies)))
    record = pipeline.log_record(state, view, own.status if own else 0, None,
                                 own.outcome if own else Outcome.FORWARDED, state.started,
                                 user_agent=view.first("user-agent") or "", referrer=view.first("referer") or "")
    out = Explanation(sample, state, forwarded, own, record, kept_sc, bool(client), beacon_out)
    _classify(policy, out, view)
    return out


def _to_vendor(state: FlowState, view: RequestView, out: BeaconForward, client_known: bool
               ) -> tuple[Forwarded | None, pipeline.Answer | None]:
    """A beacon of a vendor in beacons.forward, as mitm.gateway sends it: refused by the visitor's own signals
    (204, nothing sent), or the request the vendor's collector gets (without a known client, without the
    address fields the gateway adds)."""
    assert state.forward is not None
    query = (state.target.query or "") if state.target is not None else ""
    if gateway.refused(state.forward, view.get_all, state.policy.consent, query) is not None:
        return None, pipeline.Answer(204, Outcome.NOT_FORWARDED, (("cache-control", "no-store"),))
    client = state.client.truncated if state.client is not None and client_known else ""
    req = gateway.vendor_request(state.forward, view.method, out.target, out.fields, out.body, client,
                                 state.policy.beacons.limits)
    return Forwarded(req.url, _shown(list(req.headers), client), req.body), None


def _shown(fields: list[tuple[str, str]], client: str) -> tuple[tuple[str, str | None], ...]:
    hidden = VARYING_HEADERS if client else VARYING_HEADERS | {"x-forwarded-for"}
    return tuple((k, None if k.lower() in hidden else v) for k, v in fields)


def _classify(policy: Policy, ex: Explanation, view: RequestView) -> None:
    """Which query parameters and cookies passed untouched, and which no rule names (the tuning signal)."""
    t = ex.state.target
    rules = ex.state.scrubber.rules
    touched = {(c.scope, c.field.lower()) for c in ex.changes}
    query = t.query if t is not None and t.query else ""
    logged = set(ex.record.path.partition("?")[2].split("&"))
    for part in query.split("&") if query else ():
        name = unquote_param(part.partition("=")[0])
        if not part:
            continue
        if rules.find("query", name) is None and ("query", name) not in ex.unclassified:
            ex.unclassified.append(("query", name))
        # byte for byte in the log (nested values included) and no report-only rule that would act on it
        if part in logged and ("query", name.lower()) not in touched:
            ex.kept.append(("query", name))
    for c in "; ".join(view.get_all("cookie")).split(";"):
        name = c.strip().partition("=")[0]
        if not name:
            continue
        if rules.find("cookie", name) is None and ("cookie", name) not in ex.unclassified:
            ex.unclassified.append(("cookie", name))
        if ("cookie", name.lower()) not in touched:
            ex.kept.append(("cookie", name))
    if ex.beacon_out is not None:
        ex.unclassified += [("body", n) for n in ex.beacon_out.result.unclassified_names]


def rule_source(policy: Policy, rule_id: str) -> str:
    """`file:line` and the rule's reason, for a change's rule id."""
    rid = rule_id.removeprefix("echo:")
    for r in policy.rules.rules:
        if r.id == rid:
            where = f"{policy.path}:{r.line}" if r.line else "the shipped rules (not in your file)"
            echo = "an echo of a value this rule acted on; " if rule_id.startswith("echo:") else ""
            return echo + where + (f"  ({r.why})" if r.why else "")
    if rule_id.startswith("detector:"):
        return "detectors (unknown_fields: detect)"
    if rule_id.startswith("sensitive_path:"):
        return "sensitive_paths"
    if rule_id.startswith("role:"):
        return f"beacons.roles.{rule_id[5:]}"
    if rule_id.startswith("echo:role:"):
        return f"an echo of a value beacons.roles.{rule_id[10:]} acted on"
    if rule_id.startswith("limit:"):
        return "a limit privproxy keeps (fail closed)"
    return ""
