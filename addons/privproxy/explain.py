"""What the rules do to one request, field by field: the engine behind `privproxy explain` (C8, C9, C10).

Plain data in (a URL, headers, response cookies), plain data out, so HAR files, mitmproxy flow dumps and a
bare URL all go through the same code the proxy runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_plus, urlsplit

from privproxy import beacon, generalize, pipeline, vendors
from privproxy.consent import decision as consent
from privproxy.policy import Policy
from privproxy.scrub import Change
from privproxy.vendors.base import Beacon


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as seen on the wire (and the Set-Cookie headers of its response, when known)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    set_cookies: tuple[str, ...] = ()
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


@dataclass(slots=True)
class Explanation:
    sample: Sample
    logged_path: str
    logged_referrer: str
    logged_user_agent: str
    origin_cookie: str | None  # None: no Cookie header was sent
    set_cookies_kept: tuple[str, ...]
    changes: list[Change] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (scope, name) of fields that passed unchanged
    vendor: str = ""  # the analytics vendor, when this is a beacon
    beacon: str = ""  # what the vendor gets: "scrubbed", "unchanged", or "not forwarded (<reason>)"
    beacon_unclassified: int = 0
    consent: consent.Decision = consent.NONE


def explain(policy: Policy, sample: Sample, country: str = "") -> Explanation:
    s = policy.scrubber_for(country)
    changes: list[Change] = []
    parts = urlsplit(sample.url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    logged_path = s.url(target, "path", changes)
    referrers = sample.header("referer")
    logged_ref = s.url(referrers[0], "referrer", changes) if referrers else ""
    uas = sample.header("user-agent")
    logged_ua = generalize.user_agent(uas[0]) if uas else ""
    if uas and logged_ua != uas[0]:
        changes.append(Change("header", "User-Agent", "log:minimum-data", "generalize", uas[0], logged_ua))
    cookies = sample.header("cookie")
    # The proxy's own decision; with no client the consent header (trusted proxies only) is not believed.
    view = pipeline.RequestView("", parts.scheme == "https", sample.method, parts.netloc, target, sample.header)
    decided = pipeline.decide_consent(view, policy, None)
    if decided.analytics:
        origin_cookie = "; ".join(cookies) if cookies else None
        kept_sc = list(sample.set_cookies)
    else:
        origin_cookie = s.cookie_header("; ".join(cookies), changes) if cookies else None
        kept_sc = []
        for sc in sample.set_cookies:
            after = s.set_cookie(sc, changes)
            if after is not None:
                kept_sc.append(after)
    out = Explanation(sample, logged_path, logged_ref, logged_ua, origin_cookie, tuple(kept_sc), changes,
                      consent=decided)
    site = policy.sites.for_host(parts.netloc or (sample.header("host") or [""])[0])
    codec = policy.beacons.codec_for(parts.path or "/", site.beacon_paths)
    if codec is not None:
        b = Beacon(sample.method, parts.path or "/", parts.query, (sample.header("content-type") or [""])[0],
                   (sample.header("content-encoding") or [""])[0], sample.body)
        codec = vendors.sniff(codec, b)
        result = beacon.process(codec, b, s, policy.beacons, decided.analytics, changes)
        if result.denied:
            out.consent = decided.overridden("beacon_opt_out")
        out.vendor, out.beacon_unclassified = codec.name, result.unclassified
        out.beacon = ("scrubbed" if result.changed else "as sent (member consent)" if out.consent.analytics
                      else "unchanged") if result.forward else \
            f"not forwarded: answered {result.status} ({result.reason})"
    touched = {(c.scope, c.field.lower()) for c in changes}
    logged_query = set(logged_path.partition("?")[2].split("&"))
    for part in parts.query.split("&") if parts.query else ():
        name = unquote_plus(part.partition("=")[0])
        # byte for byte in the log (nested values included) and no report-only rule that would act on it
        if part and part in logged_query and ("query", name.lower()) not in touched:
            out.kept.append(("query", name))
    for c in "; ".join(cookies).split(";") if cookies else ():
        name = c.strip().partition("=")[0]
        if name and ("cookie", name.lower()) not in touched:
            out.kept.append(("cookie", name))
    return out


def rule_source(policy: Policy, rule_id: str) -> str:
    """`file:line` and the rule's reason, for a change's rule id."""
    for r in policy.rules.rules:
        if r.id == rule_id:
            where = f"{policy.path}:{r.line}" if r.line else policy.path
            return f"{where}" + (f"  ({r.why})" if r.why else "")
    if rule_id.startswith("detector:"):
        return "detectors (unknown_fields: detect)"
    if rule_id.startswith("sensitive_path:"):
        return "sensitive_paths"
    if rule_id.startswith("role:"):
        return f"beacons.roles.{rule_id[5:]}"
    return ""
