"""[disable] The shipped protections, and what it takes to switch one off (C1-C15; issue 17 item 6).

The shipped default_filters.yaml is the baseline of every filters.yaml: sections a file leaves out keep the
shipped settings, shipped rules and sensitive paths are merged by id, and a setting weaker than the shipped one
is refused unless the file names that protection in its top-level `disable: [...]`. The ids are a fixed set
(IDS); `check`, `report` and `privproxy_protection_disabled{protection}` show the ones a policy switches off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from privproxy import detectors, vendors
from privproxy.fields import Rule, RuleSet
from privproxy.schema_types import arr, string
from privproxy.scrub import SensitivePath
from privproxy.vendors.base import CONFIGURABLE_ROLES
from privproxy.yamlsrc import Map, Seq

if TYPE_CHECKING:
    from privproxy.policy import Policy
    from privproxy.yamlsrc import Node

# The shipped rules and sensitive paths by id; tests/unit/test_protections.py checks these against the file.
RULES = {
    "click-ids": "rule `click-ids`: ad click ids (gclid, fbclid, ...) removed from URLs and cookies",
    "contact-params": "rule `contact-params`: e-mail, phone, name and address parameters redacted",
    "personal-names": "rule `personal-names`: first, last and full name parameters (fname, last_name...) redacted",
    "visitor-ids": "rule `visitor-ids`: account and visitor id parameters pseudonymized",
    "secrets": "rule `secrets`: tokens, passwords and session ids removed from URLs",
    "tracking-cookies": "rule `tracking-cookies`: analytics and advertising cookies pseudonymized, not set",
    "device-detail": "rule `device-detail`: user agent and screen sizes generalized",
}
PATHS = {
    "health": "sensitive path `/health/**` generalized",
    "medical": "sensitive path `/medical/**` generalized",
    "recruiting": "sensitive path `/recruit/**` generalized",
    "careers-apply": "sensitive path `/careers/apply/**` generalized",
    "inquiry": "sensitive path `/inquiry/**` generalized",
}
SETTINGS = {
    "https-redirect": "plain HTTP redirected to HTTPS (`https.redirect`, no exempt path `/`)",
    "hsts": "HSTS for two years with includeSubDomains (`https.hsts`)",
    "secure-cookies": "`Secure` added to every cookie on HTTPS (`https.secure_cookies`)",
    "ip-truncation": "client addresses truncated to /24 (IPv4) and /48 (IPv6) or shorter (`ip_truncation`)",
    "unknown-fields": "fields no rule names scanned by the detectors (`unknown_fields: keep` switches it off)",
    "report-only": "the rules are applied (`report_only: true` forwards and logs everything unchanged)",
    "phone-regions": "national phone numbers of the shipped countries recognized (`detectors.phone_regions`)",
}
DETECTORS = {f"detector:{d}": f"detector `{d}` on, as strict as shipped (`detectors`)" for d in detectors.FINDERS}
VENDORS = {f"vendor:{v}": f"{v} beacons decoded and scrubbed (`beacons.vendors`; without it they pass as "
                          "ordinary pages, unscrubbed)" for v in vendors.VENDORS}
ROLES = {f"role:{r}": f"beacon field role `{r}` processed at least as strictly as shipped (`{a}`)"
         for r, a in CONFIGURABLE_ROLES.items()}
SIGNALS = {
    "signal:gpc": "`Sec-GPC: 1` overrides a consent token (`consent.honor_gpc`)",
    "signal:dnt": "`DNT: 1` overrides a consent token (`consent.honor_dnt`)",
    "signal:tcf": "an IAB TCF string must consent to purposes 1, 7, 8 and 9 (`consent.tcf_cookie`)",
    "signal:withdrawal": "the withdrawal cookie overrides a consent token (`consent.withdrawal_cookie`)",
}
IDS: dict[str, str] = {**RULES, **PATHS, **SETTINGS, **DETECTORS, **VENDORS, **ROLES, **SIGNALS}
SCHEMA = arr("Shipped protections this file switches off on purpose. Without the baseline's protection listed here, "
             "a setting weaker than the shipped one is refused; `privproxy check`, `privproxy report` and "
             "privproxy_protection_disabled show the list.",
             string("A protection id: a shipped rule or sensitive path id, https-redirect, hsts, secure-cookies, "
                    "ip-truncation, unknown-fields, report-only, phone-regions, detector:NAME, vendor:NAME, role:NAME, "
                    "signal:gpc|dnt|tcf|withdrawal.", enum=tuple(IDS)))


def parse(node: Node | None) -> dict[str, Node]:
    """`disable: [ids]`: the shipped protections a file switches off, by id, with where each is named."""
    out: dict[str, Node] = {}
    for n in node.seq() if node is not None else []:
        pid = n.string()
        if pid in IDS:
            out.setdefault(pid, n)
        else:
            n.choice(tuple(IDS), "")  # the error, with a did-you-mean
    return out
# Actions that take the value away: as strong as any shipped action.
REMOVING = ("drop", "redact")
UNKNOWN_STRENGTH = {"keep": 0, "detect": 1, "drop": 2}


def hint(pids: list[str]) -> str:
    return (f"keep the shipped setting, or add {', '.join(pids)} to disable: [...] at the top level to switch "
            f"{'it' if len(pids) == 1 else 'them'} off on purpose (check, report and metrics then show it)")


def at_least(action: str, shipped: str) -> bool:
    """The same action as shipped, or one that removes the value."""
    return action == shipped or action in REMOVING


@dataclass(frozen=True, slots=True)
class Weakening:
    protection: str
    where: str  # dotted key in filters.yaml: `https.redirect`, `rules[2]`, `sensitive_paths[0]`
    message: str


def merge(rules: tuple[Rule, ...], paths: tuple[SensitivePath, ...], base: Policy, listed: frozenset[str]
          ) -> tuple[tuple[Rule, ...], tuple[SensitivePath, ...], tuple[str, ...]]:
    """The file's rules and paths, then every shipped one it neither redefines (same id) nor disables.
    Returns them and the ids taken from the baseline."""
    own = {r.id for r in rules} | listed
    extra = tuple(dataclasses.replace(r, line=0) for r in base.rules.rules if r.id not in own)
    own_paths = {p.id for p in paths} | listed
    extra_paths = tuple(p for p in base.scrubber.sensitive_paths if p.id not in own_paths)
    return rules + extra, paths + extra_paths, tuple(r.id for r in extra) + tuple(p.id for p in extra_paths)


def weakenings(p: Policy, base: Policy, own_rules: tuple[Rule, ...], own_paths: tuple[SensitivePath, ...]
               ) -> list[Weakening]:
    """Every setting of `p` that protects less than the shipped `base`, with the protection it weakens."""
    return [*_rules(p.rules.rules, base.rules.rules, own_rules), *_paths(p, base, own_paths), *_settings(p, base)]


def _rules(merged: tuple[Rule, ...], shipped: tuple[Rule, ...], own: tuple[Rule, ...]) -> list[Weakening]:
    """Each name a shipped rule covers (and each name the file's rules use, so a new rule cannot shadow a
    shipped one) must still get an action at least as strong, for every visitor: once with all rules, once
    without the regional ones (a visitor outside every `regions`). A glob's own text is its witness."""
    base, everywhere = RuleSet.build(shipped), RuleSet.build(merged)
    unlocated = RuleSet.build(tuple(r for r in merged if not r.regions))
    witnesses = sorted({(scope, name.lower()) for r in (*shipped, *own) for scope in r.scopes for name in r.names})
    found: dict[tuple[int, str], list[tuple[str, str, Rule | None]]] = {}
    for scope, name in witnesses:
        b = base.find(scope, name)
        if b is None:
            continue
        for rules in (everywhere, unlocated):
            f = rules.find(scope, name)
            if f is not None and at_least(f.action, b.action) and (b.report_only or not f.report_only):
                continue
            # the file's rule that decides now, else the file's redefinition of the shipped rule
            i = next((i for i, r in enumerate(own) if r is f), -1)
            if i < 0:
                i = next((i for i, r in enumerate(own) if r.id == b.id), -1)
            hits = found.setdefault((i, b.id), [])
            if (scope, name, f) not in hits:
                hits.append((scope, name, f))
            break
    out = []
    shipped_by_id = {r.id: r for r in shipped}
    for (i, bid), hits in found.items():
        b = shipped_by_id[bid]
        names = _names([n for _, n, _ in hits])
        scopes = ", ".join(sorted({s for s, _, _ in hits}))
        f = hits[0][2]
        if f is None and i >= 0 and own[i].regions:
            msg = (f"its `regions` leave {names} ({scopes}) without `{b.action}` for other visitors; the shipped "
                   f"rule `{bid}` applies it to everyone")
        elif f is None:
            msg = f"{names} ({scopes}) are missing from it, so they no longer get `{b.action}` (shipped rule `{bid}`)"
        elif f.report_only and not b.report_only:
            msg = f"report_only: true leaves {names} ({scopes}) as sent; the shipped rule `{bid}` applies `{b.action}`"
        else:
            msg = f"`{f.action}` for {names} ({scopes}) is weaker than `{b.action}` of the shipped rule `{bid}`"
        out.append(Weakening(bid, f"rules[{i}]" if i >= 0 else "rules", msg))
    return out


def _names(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    if len(unique) > 3:
        return ", ".join(f"`{n}`" for n in unique[:3]) + f" and {len(unique) - 3} more"
    return " and ".join(", ".join(f"`{n}`" for n in unique).rsplit(", ", 1))


def witness(pattern: str) -> str:
    """A path a sensitive-path pattern matches: `/health/**` -> `/health/a/b`."""
    return pattern.replace("**", "a/b").replace("*", "a")


def _paths(p: Policy, base: Policy, own: tuple[SensitivePath, ...]) -> list[Weakening]:
    out = []
    for sp in base.scrubber.sensitive_paths:
        w = witness(sp.pattern)
        if any(x.regex.fullmatch(w) for x in p.scrubber.sensitive_paths):
            continue
        i = next((i for i, x in enumerate(own) if x.id == sp.id), -1)
        out.append(Weakening(sp.id, f"sensitive_paths[{i}]" if i >= 0 else "sensitive_paths",
                             f"`{sp.pattern}` (shipped as `{sp.id}`) is no longer generalized"))
    return out


def _settings(p: Policy, base: Policy) -> list[Weakening]:
    out: list[Weakening] = []

    def weak(pid: str, where: str, message: str) -> None:
        out.append(Weakening(pid, where, message))

    h, bh = p.https, base.https
    if bh.redirect and not h.redirect:
        weak("https-redirect", "https.redirect", "`false` stops redirecting plain HTTP to HTTPS")
    if bh.redirect and any(not x.strip("/") for x in h.exempt_paths):
        weak("https-redirect", "https.exempt_paths", "exempting `/` serves every page over plain HTTP")
    if h.hsts_max_age < bh.hsts_max_age:
        weak("hsts", "https.hsts.max_age", f"{h.hsts_max_age} is shorter than the shipped {bh.hsts_max_age} seconds"
             + (" (0 sends no HSTS)" if not h.hsts_max_age else ""))
    if bh.hsts_include_subdomains and not h.hsts_include_subdomains:
        weak("hsts", "https.hsts.include_subdomains", "`false` leaves subdomains without HSTS")
    if bh.secure_cookies and not h.secure_cookies:
        weak("secure-cookies", "https.secure_cookies", "`false` lets cookies travel over plain HTTP")
    t, bt = p.truncation, base.truncation
    if t.ipv4_prefix > bt.ipv4_prefix:
        weak("ip-truncation", "ip_truncation.ipv4_prefix", f"/{t.ipv4_prefix} keeps more of each address than "
                                                           f"the shipped /{bt.ipv4_prefix}")
    if t.ipv6_prefix > bt.ipv6_prefix:
        weak("ip-truncation", "ip_truncation.ipv6_prefix", f"/{t.ipv6_prefix} keeps more of each address than "
                                                           f"the shipped /{bt.ipv6_prefix}")
    s, bs = p.scrubber, base.scrubber
    if UNKNOWN_STRENGTH[s.unknown] < UNKNOWN_STRENGTH[bs.unknown]:
        weak("unknown-fields", "unknown_fields", f"`{s.unknown}` passes fields no rule names without scanning them")
    if s.report_only and not bs.report_only:
        weak("report-only", "report_only", "`true` forwards and logs every request unchanged")
    left_out = [d for d in bs.detectors.enabled if d not in s.detectors.enabled]
    for d in bs.detectors.enabled:
        if d in left_out:
            weak(f"detector:{d}", "detectors.enabled", f"leaves out the detectors {_names(left_out)}")
        elif not at_least(s.detectors.action(d), bs.detectors.action(d)):
            weak(f"detector:{d}", f"detectors.actions.{d}",
                 f"`{s.detectors.action(d)}` is weaker than the shipped `{bs.detectors.action(d)}`")
    lost = [r for r in bs.detectors.phone_regions if r not in s.detectors.phone_regions]
    if lost and "phone" in bs.detectors.enabled and "phone" not in left_out:
        weak("phone-regions", "detectors.phone_regions", f"leaves out {_names(lost)}: phone numbers written "
             "as people there write them (without +country code) would pass; list them with your own")
    b, bb = p.beacons, base.beacons
    gone = [v for v in vendors.VENDORS if v in bb.enabled and v not in b.enabled]
    for v in gone:
        weak(f"vendor:{v}", "beacons.vendors", f"beacons of {_names(gone)} would pass as ordinary pages, unscrubbed")
    for role, shipped in bb.roles.items():
        if not at_least(b.roles.get(role, shipped), shipped):
            weak(f"role:{role}", f"beacons.roles.{role}",
                 f"`{b.roles[role]}` is weaker than the shipped `{shipped}`")
    c, bc = p.consent, base.consent
    if c.enabled:
        if bc.honor_gpc and not c.honor_gpc:
            weak("signal:gpc", "consent.honor_gpc", "`false` links members whose browser sends `Sec-GPC: 1`")
        if bc.honor_dnt and not c.honor_dnt:
            weak("signal:dnt", "consent.honor_dnt", "`false` links members whose browser sends `DNT: 1`")
        if bc.tcf_cookie and not c.tcf_cookie:
            weak("signal:tcf", "consent.tcf_cookie", "an empty name stops checking IAB TCF consent")
        if bc.withdrawal_cookie and not c.withdrawal_cookie:
            weak("signal:withdrawal", "consent.withdrawal_cookie", "an empty name stops honouring withdrawals")
    return out


def locate(data: Any, where: str) -> tuple[int, int]:
    """Line and column (1-based) of a dotted key such as `https.hsts.max_age` or `rules[2]` in the loaded YAML;
    the deepest part present when the rest is not (a default), 1:1 when nothing is."""
    line, col, node = 1, 1, data
    for part in where.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            i = int(part[1:-1])
            if not isinstance(node, Seq) or i >= len(node):
                break
            try:
                ln, cl = node.lc.item(i)
                line, col = ln + 1, cl + 1
            except (KeyError, TypeError, IndexError):
                pass
            node = node[i]
        else:
            if not isinstance(node, Map) or part not in node:
                break
            try:
                ln, cl = node.lc.value(part)
                line, col = ln + 1, cl + 1
            except (KeyError, TypeError):
                pass
            node = node[part]
    return line, col
