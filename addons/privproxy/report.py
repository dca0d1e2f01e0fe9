"""[report] The public disclosure generated from the rules in force (C7; 001 §6, 003).

Which items each kind of record keeps (access logs, analytics beacons, linked member records), how each is
processed, how long it is kept, and which rules enforce each control. build() makes a plain model from a
Policy; markdown() and html() render it, so a rule change always changes the published notice.
"""

from __future__ import annotations

import datetime
import html as htmllib
from dataclasses import dataclass

from privproxy import protections, vendors
from privproxy.controls import CONTROLS
from privproxy.policy import Policy
from privproxy.vendors.base import CONFIGURABLE_ROLES

FORMATS = ("md", "html")

PERIOD = {"hourly": "every hour", "daily": "every day", "weekly": "every week"}

ROLE_TITLES = {
    "client_id": "Visitor (client) ids",
    "session_id": "Session ids",
    "device_id": "Device and advertising ids",
    "user_id": "The site's own member or user id",
    "ip": "IP addresses inside the beacon",
    "user_agent": "User-agent strings inside the beacon",
    "contact": "E-mail addresses, phone numbers, names and postal addresses (clear or hashed)",
    "click_id": "Ad click ids (gclid, fbclid, msclkid, ...)",
    "fingerprint": "High-entropy client hints and fingerprints",
    "device": "Screen and viewport sizes",
}
assert set(ROLE_TITLES) == set(CONFIGURABLE_ROLES)

DETECTOR_TITLES = {"email": "e-mail addresses", "phone": "phone numbers", "ip": "IP addresses",
                   "card": "payment card numbers", "mynumber": "Individual Numbers (My Number)",
                   "jwt": "signed tokens (JWT)"}


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    title: str
    controls: tuple[str, ...]
    text: tuple[str, ...] = ()
    table: Table | None = None
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    title: str
    intro: tuple[str, ...]
    warnings: tuple[str, ...]
    sections: tuple[Section, ...]


ACTION_WORDS = {"drop": "removed", "redact": "replaced by a marker", "hash": "pseudonymized",
                "truncate": "truncated", "generalize": "generalized", "keep": "kept unchanged"}


def processing(action: str) -> str:
    """A few words for the action; the glossary section says what they mean with the settings in force."""
    return ACTION_WORDS[action]


def _glossary(p: Policy) -> Section:
    t = p.truncation
    meaning = {
        "drop": "the item is deleted before the record is written or the data is forwarded",
        "redact": "the value is replaced by a fixed text such as `[redacted]`",
        "hash": "the value is replaced by a keyed hash (HMAC-SHA256) of the same shape, which the proxy "
                "instances sharing the key compute alike, so counts of unique visitors per period still work; "
                + _keys_text(p),
        "truncate": f"IP addresses keep only their first {t.ipv4_prefix} bits (IPv4, e.g. `203.0.113.0`) or "
                    f"{t.ipv6_prefix} bits (IPv6); timestamps keep the hour",
        "generalize": "user agents keep the browser family and major version and the operating system family; "
                      "screen and viewport sizes are rounded to 100 pixels; sensitive page addresses become "
                      "templates",
    }
    rows = tuple((ACTION_WORDS[action], text) for action, text in meaning.items())
    return Section("How each kind of processing works", (), (), Table(("processing", "meaning"), rows))


_DOMAINS = ("; each destination (the access log, the site's own cookies, each analytics provider) has a key "
            "of its own derived from the period's key, so one identifier gets unrelated pseudonyms at two "
            "destinations and they cannot join their records by it")


def _keys_text(p: Policy) -> str:
    """What the pseudonymization keys allow in the mode configured, said plainly (C11)."""
    return _period_keys_text(p) + _DOMAINS


def _period_keys_text(p: Policy) -> str:
    every = PERIOD[p.pseudonyms.rotation]
    if p.pseudonyms.key_file:
        return (f"the key changes {every}: each period's key is derived one way from the previous one, which is then "
                "erased from every proxy instance and, when the shared key file is advanced at the start of the "
                "period, from that file too, so a past period's pseudonyms can no longer be recomputed and the "
                "same visitor cannot be followed from one period to the next")
    return (f"the key changes {every}, but each period's key is derived from a fixed secret held by the proxy "
            "instances and their operators (without one, each process uses a random key it never stores): "
            "whoever holds that secret can recompute the pseudonyms of any past period and follow a visitor "
            "from one period to the next")


def _days(n: int | None) -> str:
    return "kept without a time limit" if n is None else f"deleted after {n} day{'s' if n != 1 else ''}"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _ip_text(p: Policy) -> str:
    t = p.truncation
    text = (f"truncated to the first {t.ipv4_prefix} bits (IPv4) or {t.ipv6_prefix} bits (IPv6) before anything "
            "is stored, logged or forwarded; the full address is never written")
    if p.client_ip.trusted_proxies:
        nets = ", ".join(f"`{n}`" for n in p.client_ip.trusted_proxies)
        return text + f". Forwarding headers are believed only from this site's own proxies ({nets})"
    return text + ". Addresses claimed in forwarding headers are ignored"


def _url_text(p: Policy) -> str:
    s = p.scrubber
    url_rules = [r for r in s.rules.rules if r.scopes & {"query", "path", "referrer"}]
    parts = []
    if url_rules:
        parts.append("parameters named in the rules " + ", ".join(
            f"`{r.id}` ({processing(r.action)})" for r in url_rules) + " (names under *Rules in force*)")
    if s.detectors.enabled:
        parts.append("found anywhere in it, " + _detected(p))
    if s.sensitive_paths:
        parts.append("sensitive pages are recorded as a template: " + ", ".join(
            f"`{sp.pattern}` as `{sp.replace}`" for sp in s.sensitive_paths))
    return "; ".join(parts) if parts else "kept as requested"


def _geo_text(p: Policy) -> str:
    g = p.geo
    if not g.database:
        return "not recorded (no geographic database is configured)"
    levels = {"country": "country", "subdivision": "country and region (prefecture, state)",
              "city": "country, region and city"}[g.granularity]
    return (f"{levels}, looked up from the full address before it is truncated; a place seen fewer than "
            f"{g.small_cell_k} times in {g.window_seconds // 60} minutes is recorded one level coarser, so a rare "
            "place cannot single out a visitor")


def _transport(p: Policy) -> Section:
    h = p.https
    rows = [
        ("Plain HTTP", f"redirected to HTTPS (status {h.redirect_status})" if h.redirect else "not redirected"),
        ("HSTS", f"max-age {h.hsts_max_age // 86400} days" + (", including subdomains" if h.hsts_include_subdomains
                                                             else "") + (", preload" if h.hsts_preload else "")
         if h.hsts_max_age else "not sent"),
        ("Cookies", "marked `Secure`" if h.secure_cookies else "left as the site sets them"),
        ("Oldest TLS version accepted", h.min_tls.replace("TLS1_", "TLS 1.")),
    ]
    return Section("Encrypted transport", ("C1",), table=Table(("item", "how"), tuple(rows)))


def _access_log(p: Policy) -> Section:
    s = p.scrubber
    cookie_rules = [r for r in s.rules.rules if "cookie" in r.scopes]
    rows = [
        ("Time of the request", "kept (UTC)", "C3"),
        ("Client IP address", _ip_text(p), "C2, C8"),
        ("Client port", "not kept", "C9"),
        ("Page address (path and query)", _url_text(p), "C2, C8, C10"),
        ("Referrer", "processed like the page address", "C2, C10"),
        ("User agent", "only browser family and major version and operating system family, e.g. "
                       "`Chrome 120 (Windows)`", "C9"),
        ("Cookies", "not recorded", "C4"),
        ("Country and region", _geo_text(p), "C3, C14"),
        ("Method, status, size, duration, protocol, TLS version, request id, site, host, proxy instance",
         "kept for running and troubleshooting the website", "C3"),
    ]
    rot = p.logging.rotation
    size = f" and whenever a file reaches {rot.max_bytes // (1024 * 1024)} MB" if rot.max_bytes else ""
    after = [f"Log files are started anew {'every day' if rot.daily else 'only by size'}{size}; old files are "
             f"{_days(rot.retention_days)}. Pseudonymization: {_keys_text(p)}."]
    if cookie_rules:
        after.append("The website's own servers receive the visitor's cookies with those named in the rules "
                     + ", ".join(f"`{r.id}` ({processing(r.action)})" for r in cookie_rules)
                     + " already processed.")
    return Section("Access logs", ("C2", "C3", "C8", "C9", "C10", "C11"),
                   ("Every request to the website leaves one access-log record, used for statistics and for "
                    "running the servers. It cannot identify a person. Each record keeps:",),
                   Table(("item", "how it is processed", "controls"), tuple(rows)), tuple(after))


def _paths(p: Policy) -> str:
    extra = [*p.beacons.paths, *(pp for site in (*p.sites.sites, p.sites.default) for pp in site.beacon_paths)]
    return ", ".join(f"`{path}` ({vendor})" for path, vendor in extra)


def _detected(p: Policy) -> str:
    """'e-mail addresses and phone numbers are replaced by a fixed marker; IP addresses are truncated (...)'"""
    d = p.scrubber.detectors
    by_action: dict[str, list[str]] = {}
    for name in d.enabled:
        by_action.setdefault(d.action(name), []).append(DETECTOR_TITLES.get(name, name))
    return "; ".join(f"{', '.join(names)} are {processing(action)}" for action, names in by_action.items())


def _beacons(p: Policy) -> Section:
    enabled = [vendors.VENDORS[v] for v in vendors.VENDORS if v in p.beacons.enabled]
    if not enabled:
        return Section("Analytics", ("C4", "C6"), ("No analytics beacon is filtered by this proxy: none is "
                                                   "enabled in `beacons.vendors`.",))
    roles = p.beacons.roles
    rows = [(ROLE_TITLES[r], processing(roles[r])) for r in ROLE_TITLES]
    rows.append(("Page address and referrer", "the page-address processing of the access log"))
    unknown = {"detect": "scanned: " + (_detected(p) or "no detector is enabled"),
               "drop": "removed", "keep": "kept unchanged"}[p.scrubber.unknown]
    rows.append(("Fields no rule knows", unknown))
    rows.append(("Cookies sent along", "only the vendor's own cookies are forwarded, processed by the cookie rules"))
    set_rules = [r for r in p.scrubber.rules.rules if "set_cookie" in r.scopes]
    if set_rules:
        rows.append(("Tracking cookies set in the browser", "not set: cookies named in the rules "
                     + ", ".join(f"`{r.id}`" for r in set_rules)))
    rows.append(("Consent signals in the beacon (Google Consent Mode, IAB TCF)",
                 "kept as sent and obeyed; a refusal is never weakened"))
    rows.append(("Beacons that cannot be decoded",
                 "never forwarded with their identifiers: identifying fields are removed, or the beacon is not "
                 f"forwarded at all; bodies over {p.beacons.limits.max_body // 1024} KB are refused"))
    intro = ("This website measures its use with " + ", ".join(c.title for c in enabled) + ". The visitor's browser "
             "sends these measurements to the website's own addresses; they are filtered here before the analytics "
             "provider receives them. Unless the visitor is a member who consented (next section):",)
    after = ()
    if _paths(p):
        after = ("Collection addresses configured for this site in addition to each provider's defaults: "
                 + _paths(p) + ".",)
    return Section("Analytics", ("C4", "C6", "C8", "C9", "C10"), intro, Table(("data", "how it is processed"),
                                                                              tuple(rows)), after)


def _members(p: Policy) -> Section:
    c = p.consent
    if not c.enabled:
        return Section("Members who consented", ("C5", "C12", "C13"),
                       ("No visitor is linked to their identity: member-linkage consent is switched off, so every "
                        "request is processed as described above.",))
    refusals = ["a withdrawal (`" + c.withdrawal_cookie + "` cookie)" if c.withdrawal_cookie else "",
                "a revocation by the member" if c.revocations is not None else "",
                "Global Privacy Control (`Sec-GPC: 1`)" if c.honor_gpc else "",
                "Do Not Track (`DNT: 1`)" if c.honor_dnt else "",
                "an IAB TCF consent string without consent to purposes 1, 7, 8 and 9" if c.tcf_cookie else "",
                "a refusal inside the analytics beacon itself"]
    text = (
        "A visitor is linked to their identity only when they registered as a member and consented. The member "
        f"system then gives the browser a signed consent token (HMAC-SHA256, valid for at most {c.max_ttl_days} "
        "days), and the proxy checks its signature and expiry on every request. Forged, expired or unknown "
        "tokens count as no consent.",
        "With a valid token, the member's analytics measurements reach the provider as the browser sent them, "
        "and (when the member consented to it) each request is also written, with the member id, to a separate "
        "linked log that keeps the access-log items above plus the member id and the id of the signing key.",
        "A valid token is overridden by " + ", ".join(r for r in refusals if r) + ".",
    )
    after = (f"Linked records are {_days(c.linked_retention_days)}. On request a member's linked records are "
             "exported in a portable format (JSON lines) or erased (`privproxy dsr export|erase`), and each request "
             "is recorded without the member id in clear.",)
    return Section("Members who consented", ("C5", "C12", "C13"), text, None, after)


def _regions(p: Policy) -> Section:
    rules = [r for r in p.scrubber.rules.rules if r.regions]
    if not rules:
        return Section("Visitors from different regions", ("C14",),
                       ("The same rules apply to every visitor, wherever they are.",))
    rows = tuple((f"`{r.id}`", ", ".join(sorted(r.regions)), processing(r.action)) for r in rules)
    return Section("Visitors from different regions", ("C14",),
                   ("Some rules apply only to visitors from certain countries (looked up from the full address "
                    "before it is truncated):",), Table(("rule", "countries", "processing"), rows))


def _rules(p: Policy) -> Section:
    rows = tuple((f"`{r.id}`" + (" (counted only, not applied)" if r.report_only else ""),
                  ", ".join(sorted(r.scopes)), _names(r.names), processing(r.action), ", ".join(r.controls),
                  r.why) for r in p.scrubber.rules.rules)
    return Section("Rules in force", (), ("Every rule of the configuration, as applied to parameters, cookies, "
                                          "headers and analytics fields:",),
                   Table(("rule", "applies to", "names", "processing", "controls", "why"), rows))


def _builtin(p: Policy) -> dict[str, str]:
    """What enforces each control whatever the rules say, with the settings in force."""
    t, c, g = p.truncation, p.consent, p.geo
    return {
        "C1": f"HTTPS redirect, HSTS, Secure cookies, TLS >= {p.https.min_tls.replace('TLS1_', '1.')}",
        "C2": f"client address truncation (/{t.ipv4_prefix}, /{t.ipv6_prefix}); access-log record",
        "C3": "access-log record with status, timings, request id" + (", coarse geography" if g.database else ""),
        "C4": "cookies never logged; only a vendor's own cookies forwarded to it",
        "C5": "signed consent tokens; separate linked log" if c.enabled else "consent switched off: nobody linked",
        "C6": "beacon codecs for " + ", ".join(sorted(p.beacons.enabled)) if p.beacons.enabled else "no vendor",
        "C7": "this report, generated from the rules in force",
        "C8": "detectors (" + ", ".join(p.scrubber.detectors.enabled) + ") on unknown fields and URLs",
        "C9": "client port dropped; user agent generalized",
        "C10": "sensitive paths: " + (", ".join(f"`{s.pattern}`" for s in p.scrubber.sensitive_paths) or "none"),
        "C11": f"log retention ({_days(p.logging.rotation.retention_days)}); key rotation "
               f"{PERIOD[p.pseudonyms.rotation]}" + (" (one-way ratchet: past keys erased)" if p.pseudonyms.key_file
                                                     else " (from a fixed secret: past keys can be recomputed)"),
        "C12": "`privproxy dsr export` and `erase` over the linked log" if c.enabled else "no linked records exist",
        "C13": "GPC, DNT, TCF, withdrawal and revocation override consent" if c.enabled else "nobody is linked",
        "C14": "region rules" if any(r.regions for r in p.scrubber.rules.rules) else "available (no region rule set)",
        "C15": "forwarding headers only from trusted proxies; forged tokens refused; metrics on loopback by default",
    }


def _disabled(p: Policy) -> Section:
    """The shipped protections this configuration switches off (`disable:`), each with what it protected."""
    title = "Protections switched off"
    if not p.disabled:
        return Section(title, (), ("None: every protection privproxy ships is in force.",))
    rows = tuple((f"`{pid}`", protections.IDS[pid]) for pid in p.disabled)
    return Section(title, (), ("The operator switched off these protections that privproxy applies by default; "
                               "the rest of this notice describes what happens instead:",),
                   Table(("protection", "what it does when on"), rows))


def _controls(p: Policy) -> Section:
    builtin = _builtin(p)
    rows = []
    for cid, (what, clauses) in CONTROLS.items():
        rules = [f"`{r.id}`" for r in p.scrubber.rules.rules if cid in r.controls]
        rules += [f"`{s.id}`" for s in p.scrubber.sensitive_paths if cid in s.controls]
        rows.append((cid, what, clauses, builtin[cid] + ("; rules " + ", ".join(rules) if rules else "")))
    return Section("Controls and the rules that enforce them", (), (),
                   Table(("id", "promise", "policy clauses", "enforced by"), tuple(rows)))


def build(p: Policy, version: str, generated: datetime.datetime | None = None) -> Report:
    generated = generated or datetime.datetime.now(datetime.UTC)
    intro = (f"This notice describes how this website processes the information its visitors' browsers send. It "
             f"is generated by privproxy {version} from the rules in force (configuration sha256 "
             f"`{p.sha256[:16]}`, generated {generated:%Y-%m-%d %H:%M} UTC); it changes whenever they change.",)
    warnings = []
    if p.scrubber.report_only:
        warnings.append("The rules are in report-only mode: what they would change is counted, but requests, logs "
                        "and analytics are NOT filtered. This notice describes the rules, not what happens now.")
    if any(r.report_only for r in p.scrubber.rules.rules) and not p.scrubber.report_only:
        warnings.append("Some rules are counted only and not applied (marked in the rules table).")
    if p.disabled:
        warnings.append(f"{len(p.disabled)} of the protections privproxy ships are switched off by this "
                        "configuration (listed in the first section).")
    sections = (_disabled(p), _transport(p), _access_log(p), _beacons(p), _members(p), _regions(p), _glossary(p),
                _rules(p), _controls(p))
    return Report("How this website processes access information", intro, tuple(warnings), sections)


# -- rendering ---------------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(r: Report) -> str:
    out = [f"# {r.title}", ""]
    out += [*r.intro, ""]
    out += [f"> **Warning:** {w}\n" for w in r.warnings]
    for s in r.sections:
        out += [f"## {s.title}" + (f" ({', '.join(s.controls)})" if s.controls else ""), ""]
        out += [t + "\n" for t in s.text]
        if s.table:
            out.append("| " + " | ".join(s.table.headers) + " |")
            out.append("|" + "---|" * len(s.table.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.table.rows]
            out.append("")
        out += [t + "\n" for t in s.after]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = text.split("`")
    return "".join(f"<code>{htmllib.escape(part)}</code>" if i % 2 else htmllib.escape(part)
                   for i, part in enumerate(parts))


STYLE = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.45}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .6em;"
         "vertical-align:top;text-align:left}th{background:#f3f3f3}.warning{border-left:4px solid #c00;"
         "padding:.5em 1em;background:#fff3f3}code{font-size:.92em}")


def html(r: Report) -> str:
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{htmllib.escape(r.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{htmllib.escape(r.title)}</h1>"]
    out += [f"<p>{_inline(t)}</p>" for t in r.intro]
    out += [f'<p class="warning"><strong>Warning:</strong> {_inline(w)}</p>' for w in r.warnings]
    for s in r.sections:
        controls = f" ({htmllib.escape(', '.join(s.controls))})" if s.controls else ""
        out.append(f"<h2>{htmllib.escape(s.title)}{controls}</h2>")
        out += [f"<p>{_inline(t)}</p>" for t in s.text]
        if s.table:
            out.append("<table><thead><tr>" + "".join(f"<th>{htmllib.escape(h)}</th>" for h in s.table.headers)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in s.table.rows]
            out.append("</tbody></table>")
        out += [f"<p>{_inline(t)}</p>" for t in s.after]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render(r: Report, fmt: str) -> str:
    return markdown(r) if fmt == "md" else html(r)
