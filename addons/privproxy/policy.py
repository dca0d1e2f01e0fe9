"""filters.yaml -> Policy: parsed once into frozen objects; a new file yields a new Policy, swapped whole."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privproxy import (beacon, client_ip, detectors, geo, https, protections, pseudonyms, schema, scrub, sites,
                       truncate, vendors)
from privproxy.access_log.rotation import Rotation
from privproxy.consent import decision as consent
from privproxy.consent.revocations import Revocations
from privproxy.errors import ConfigError, ConfigErrors
from privproxy.fields import ACTIONS, SCOPES, Rule, RuleSet
from privproxy.pseudonyms import Pseudonymizer
from privproxy.vendors.base import Limits
from privproxy.yamlsrc import Node, load_text, root

SECTIONS = tuple(schema.FILTERS.props)
CONTROL = re.compile(schema.CONTROL_PATTERN)
ENV_NAME = re.compile(schema.ENV_NAME_PATTERN)
KEY_ID = re.compile(schema.KEY_ID_PATTERN)
_generation = itertools.count(1)


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "json"
    rotation: Rotation = Rotation()


@dataclass(frozen=True, slots=True)
class Policy:
    path: str
    sha256: str
    generation: int
    sites: sites.Sites
    client_ip: client_ip.Settings
    https: https.Settings
    truncation: truncate.Truncation
    pseudonyms: pseudonyms.Settings
    scrubber: scrub.Scrubber
    logging: LogSettings = field(default_factory=lambda: LogSettings())
    geo: geo.Settings = field(default_factory=lambda: geo.Settings())
    beacons: beacon.Settings = field(default_factory=lambda: beacon.Settings())
    consent: consent.Settings = field(default_factory=lambda: consent.Settings())
    _by_country: dict[str, scrub.Scrubber] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=())
    # The shipped baseline (privproxy.protections): protections this file switches off with `disable:`, the
    # shipped rule and sensitive-path ids in force that it does not mention, and the sections it leaves out.
    disabled: tuple[str, ...] = ()
    inherited: tuple[str, ...] = ()
    inherited_sections: tuple[str, ...] = ()

    @property
    def rules(self) -> RuleSet:
        return self.scrubber.rules

    def scrubber_for(self, country: str) -> scrub.Scrubber:
        """The scrubber whose rules apply to visitors from `country`; unknown ("") gets every rule."""
        if not country or not any(r.regions for r in self.scrubber.rules.rules):
            return self.scrubber
        got = self._by_country.get(country)
        if got is None:
            rules = tuple(r for r in self.scrubber.rules.rules if not r.regions or country in r.regions)
            got = dataclasses.replace(self.scrubber, rules=RuleSet.build(rules))
            if len(self._by_country) < 300:  # ISO codes are bounded; never let odd input grow this
                self._by_country[country] = got
        return got


def load(path: str | Path) -> Policy:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(p),
                          hint="pass --config with the path of your filters.yaml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the file: {e}", path=str(p),
                          hint="check permissions and that it is UTF-8") from None
    return from_text(text, str(p))


DEFAULT_FILE = Path(__file__).with_name("default_filters.yaml")
BUILTIN = "<built-in filters.yaml>"
# Sections taken whole from the shipped file when a filters.yaml leaves them out; rules and sensitive paths are
# merged by id instead (protections.merge).
INHERITED_SECTIONS = tuple(x for x in SECTIONS if x not in ("version", "disable", "rules", "sensitive_paths"))


def default() -> Policy:
    """The shipped policy (the repository's filters.yaml), used when no filters.yaml is given or found."""
    return from_text(DEFAULT_FILE.read_text(encoding="utf-8"), BUILTIN)


@functools.cache
def _baseline() -> Policy:
    """The shipped file read alone: what every filters.yaml is compared with and completed from."""
    return from_text(DEFAULT_FILE.read_text(encoding="utf-8"), BUILTIN, secret=b"baseline", baseline=False)


@functools.cache
def _shipped_sections() -> dict[str, Node]:
    return root(load_text(DEFAULT_FILE.read_text(encoding="utf-8"), BUILTIN), BUILTIN).mapping(set(SECTIONS))


def from_text(text: str, path: str = "<string>", *, secret: bytes | None = None, baseline: bool = True) -> Policy:
    """Parse a filters.yaml. With the baseline (always, outside tests), sections it leaves out keep the shipped
    settings, shipped rules and sensitive paths are merged by id, and weakening a shipped protection is an error
    unless `disable:` names it (privproxy.protections). `baseline=False` reads the text alone: for the shipped
    file itself and for unit tests that need a bare rule set."""
    data = load_text(text, path)
    top = root(data, path)
    if data is None:  # empty, only comments, or `---`: a truncating editor or an empty ConfigMap key
        top.errors.add("the file is empty (or holds only comments), which would leave the proxy without rules",
                       1, 1, "write `version: 1` and the sections you change; sections left out keep the shipped "
                             "settings (run `privproxy check FILE` before saving)")
        top.errors.raise_if_any()
    if not isinstance(data, dict):
        top.errors.add("the file must be a mapping of sections", 1, 1,
                       f"start with `version: 1`; sections: {', '.join(SECTIONS)}")
        top.errors.raise_if_any()
    s = top.mapping(set(SECTIONS))
    if "version" not in s:
        top.errors.add("`version` is missing", 1, 1, "add `version: 1` as the first line; a file without it is "
                                                     "refused, so a truncated or foreign file never replaces the rules")
    elif s["version"].value is None:
        kl, kc = data.lc.key("version")
        top.errors.add("version: no value", kl + 1, kc + 1, "write `version: 1`")
    elif s["version"].integer(1) != 1:
        s["version"].error("only version 1 exists", "write `version: 1`")
    base = _baseline() if baseline else None
    shipped = _shipped_sections() if baseline else {}

    def section(name: str) -> Node | None:
        return s[name] if name in s else shipped.get(name)

    listed = _disable(s.get("disable"))
    truncation = _truncation(section("ip_truncation"))
    psettings = _pseudonyms(section("pseudonymization"), path)
    own_rules, own_paths = _rules(s.get("rules")), _sensitive(s.get("sensitive_paths"))
    rules, paths, inherited = own_rules, own_paths, ()
    if base is not None:
        rules, paths, inherited = protections.merge(own_rules, own_paths, base, frozenset(listed))
    unknown, report_only = section("unknown_fields"), section("report_only")
    warnings: list[str] = []
    scrubber = scrub.Scrubber(
        rules=RuleSet.build(rules),
        detectors=_detectors(section("detectors")),
        sensitive_paths=paths,
        pseudonymizer=Pseudonymizer(psettings, secret=secret),
        truncation=truncation,
        unknown=unknown.choice(scrub.UNKNOWN_CHOICES, "detect") if unknown is not None else "detect",
        report_only=report_only.boolean(False) if report_only is not None else False,
    )
    policy = Policy(
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        generation=next(_generation),
        sites=_sites(section("sites")),
        client_ip=_client_ip(section("client_ip"), truncation),
        https=_https(section("https")),
        truncation=truncation,
        pseudonyms=psettings,
        scrubber=scrubber,
        logging=_logging(section("logging")),
        geo=_geo(section("geo"), path),
        beacons=_beacons(section("beacons")),
        consent=_consent(section("consent"), path, warnings),
        warnings=(),
    )
    disabled = tuple(listed)
    if base is not None:
        disabled = _protections(policy, base, own_rules, own_paths, listed, data, top, warnings)
    warnings[0:0] = scrubber.pseudonymizer.warnings(path)  # what the keys allow, in the mode configured
    policy = dataclasses.replace(
        policy, warnings=tuple(warnings), disabled=disabled, inherited=inherited,
        inherited_sections=tuple(x for x in INHERITED_SECTIONS if x in shipped and x not in s))
    top.errors.raise_if_any()
    return policy


def _disable(node: Node | None) -> dict[str, Node]:
    """`disable: [ids]`: the shipped protections this file switches off, by id (privproxy.protections.IDS)."""
    out: dict[str, Node] = {}
    for n in node.seq() if node is not None else []:
        pid = n.string()
        if pid in protections.IDS:
            out.setdefault(pid, n)
        else:
            n.choice(tuple(protections.IDS), "")  # the error, with a did-you-mean
    return out


def _protections(p: Policy, base: Policy, own_rules: tuple[Rule, ...], own_paths: tuple[scrub.SensitivePath, ...],
                 listed: dict[str, Node], data: Any, top: Node, warnings: list[str]) -> tuple[str, ...]:
    """Refuse each weakening of a shipped protection that `disable:` does not name; return what is switched
    off, in the order of protections.IDS. A listed protection the file does not weaken is a warning."""
    own = {r.id for r in own_rules} | {sp.id for sp in own_paths}
    off = {pid for pid in listed if pid in (*protections.RULES, *protections.PATHS) and pid not in own}  # removed
    refused: dict[str, list[protections.Weakening]] = {}
    for w in protections.weakenings(p, base, own_rules, own_paths):
        if w.protection in listed:
            off.add(w.protection)
        else:
            refused.setdefault(w.where, []).append(w)
    for where, ws in refused.items():  # one error per place, e.g. every vendor left out of beacons.vendors
        line, col = protections.locate(data, where)
        top.errors.add(f"{where}: " + "; ".join(dict.fromkeys(w.message for w in ws)), line, col,
                       protections.hint(list(dict.fromkeys(w.protection for w in ws))))
    for pid, n in listed.items():
        if pid not in off:
            fix = (f"delete its `{pid}` entry to switch it off" if pid in own
                   else "remove it from the list, or make the setting weaker")
            warnings.append(f"{p.path}:{n.line}:{n.col}: disable: `{pid}` has no effect: this file keeps that "
                            f"protection as strict as shipped ({fix})")
    if off:
        warnings.append(f"{p.path}: shipped protections switched off by `disable:`: "
                        + ", ".join(pid for pid in protections.IDS if pid in off))
    return tuple(pid for pid in protections.IDS if pid in off)


def missing_secrets(p: Policy) -> list[str]:
    """What a deployment that must agree across instances lacks: the pseudonym secret, and a consent key
    when consent is on. Empty when both are present."""
    missing = []
    if lacking := p.scrubber.pseudonymizer.missing_secret():  # a key file or the secret_env variable
        missing.append(lacking)
    if p.consent.enabled and not p.consent.secrets:
        envs = ", ".join(k.env for k in p.consent.keys)
        missing.append(f"no consent key of at least 32 characters is set (environment: {envs})")
    return missing


def _truncation(node: Node | None) -> truncate.Truncation:
    if node is None:
        return truncate.Truncation()
    m = node.mapping(schema.keys("ip_truncation"))
    return truncate.Truncation(
        ipv4_prefix=m["ipv4_prefix"].integer(24, 0, 32) if "ipv4_prefix" in m else 24,
        ipv6_prefix=m["ipv6_prefix"].integer(48, 0, 128) if "ipv6_prefix" in m else 48,
    )


def _client_ip(node: Node | None, t: truncate.Truncation) -> client_ip.Settings:
    if node is None:
        return client_ip.Settings(truncation=t)
    m = node.mapping(schema.keys("client_ip"))
    nets: list[client_ip.Network] = []
    for n in m["trusted_proxies"].seq() if "trusted_proxies" in m else []:
        got = n.parsed(client_ip.parse_networks_one, "CIDR", "write an address or network such as 10.0.0.0/8")
        if got is not None:
            nets.append(got)
    headers = tuple(n.choice(client_ip.HEADER_CHOICES, "x-forwarded-for") for n in m["headers"].seq()) \
        if "headers" in m else client_ip.Settings().headers
    return client_ip.Settings(trusted_proxies=tuple(nets), headers=headers, truncation=t)


def _https(node: Node | None) -> https.Settings:
    d = https.Settings()
    if node is None:
        return d
    m = node.mapping(schema.keys("https"))
    hsts = m["hsts"].mapping(schema.keys("https.hsts")) if "hsts" in m else {}
    status = d.redirect_status
    if "redirect_status" in m:
        status = m["redirect_status"].integer(308)
        if status not in https.REDIRECT_CODES:
            m["redirect_status"].error(f"{status} is not a redirect status",
                                       "use 301, 302, 307 or 308 (308 keeps the method)")
            status = 308
    port = None
    if "https_port" in m and m["https_port"].value is not None:
        port = m["https_port"].integer(443, 1, 65535)
    exempt = d.exempt_paths
    if "exempt_paths" in m:
        exempt = m["exempt_paths"].strings()
        for n, p in zip(m["exempt_paths"].seq(), exempt, strict=False):
            if not p.startswith("/"):
                n.error(f"`{p}` is not a path", "paths start with /, e.g. /healthz")
    return https.Settings(
        redirect=m["redirect"].boolean(True) if "redirect" in m else True,
        redirect_status=status,
        https_port=port,
        exempt_paths=exempt,
        hsts_max_age=hsts["max_age"].integer(d.hsts_max_age, 0) if "max_age" in hsts else d.hsts_max_age,
        hsts_include_subdomains=hsts["include_subdomains"].boolean(True) if "include_subdomains" in hsts else True,
        hsts_preload=hsts["preload"].boolean(False) if "preload" in hsts else False,
        secure_cookies=m["secure_cookies"].boolean(True) if "secure_cookies" in m else True,
        min_tls=m["min_tls"].choice(https.TLS_VERSIONS, "TLS1_2") if "min_tls" in m else "TLS1_2",
    )


def _pseudonyms(node: Node | None, path: str = "<string>") -> pseudonyms.Settings:
    if node is None:
        return pseudonyms.Settings()
    m = node.mapping(schema.keys("pseudonymization"))
    env = m["secret_env"].string("PRIVPROXY_SECRET") if "secret_env" in m else "PRIVPROXY_SECRET"
    if not ENV_NAME.fullmatch(env):
        m["secret_env"].error(f"`{env}` is not an environment variable name", "e.g. PRIVPROXY_SECRET")
    rotation = m["rotation"].choice(tuple(pseudonyms.ROTATIONS), "daily") if "rotation" in m else "daily"
    key_file = ""
    if "key_file" in m:
        key_file = _beside(path, m["key_file"].string().strip())
        if not key_file:
            m["key_file"].error("no file named", "e.g. key_file: keys/pseudonym.json (relative to this file), "
                                                 "or remove the line to use secret_env")
    # The key file itself is read by the Pseudonymizer: a missing or broken one is a warning (each process then
    # uses its own random key) and a missing secret for --require-secrets, as an unset secret_env variable is.
    return pseudonyms.Settings(secret_env=env, rotation=rotation, key_file=key_file)


def _sites(node: Node | None) -> sites.Sites:
    if node is None:
        return sites.Sites()
    out = []
    default = sites.Site("default", None)
    for name, n in node.items():
        m = n.mapping(schema.keys("sites{}"))
        upstream = m["upstream"].parsed(sites.parse_upstream, "upstream URL", "e.g. http://10.0.0.5:8080") \
            if "upstream" in m else None
        hosts = tuple(h.lower() for h in m["hosts"].strings()) if "hosts" in m else ()
        beacon_paths = _beacon_paths(m["beacon_paths"]) if "beacon_paths" in m else ()
        if name == "default":
            default = sites.Site("default", upstream, hosts, beacon_paths)
            continue
        if "upstream" not in m:
            n.error("a site needs an `upstream`", "add `upstream: http://host:port`")
        if not hosts:
            n.error("a site needs `hosts`", "add `hosts: [www.example.com]`")
        out.append(sites.Site(name, upstream, hosts, beacon_paths))
    return sites.Sites(tuple(out), default)


def _beacon_paths(node: Node) -> tuple[tuple[str, str], ...]:
    out = []
    for path, n in node.items():
        if not path.startswith(("/", "*")):
            n.error(f"`{path}` is not a path", "collection paths start with / (or * to match any prefix)")
        vendor = n.choice(tuple(vendors.VENDORS), "ga4")
        out.append((path, vendor))
    return tuple(out)


def _beacons(node: Node | None) -> beacon.Settings:
    d = beacon.Settings()
    if node is None:
        return d
    m = node.mapping(schema.keys("beacons"))
    enabled = d.enabled
    if "vendors" in m:
        enabled = frozenset(x.choice(tuple(vendors.VENDORS), "ga4") for x in m["vendors"].seq())
    roles = dict(d.roles)
    if "roles" in m:
        for role, rn in m["roles"].mapping(schema.keys("beacons.roles")).items():
            roles[role] = rn.choice(ACTIONS, roles[role])
    body_kb = m["max_body_kb"].integer(512, 1) if "max_body_kb" in m else 512
    inflated_kb = m["max_decompressed_kb"].integer(2048, 1) if "max_decompressed_kb" in m else 2048
    return beacon.Settings(
        roles=roles,
        limits=Limits(max_body=body_kb * 1024, max_decompressed=inflated_kb * 1024),
        enabled=enabled,
        paths=_beacon_paths(m["paths"]) if "paths" in m else (),
    )


def _consent(node: Node | None, path: str, warnings: list[str]) -> consent.Settings:
    d = consent.Settings()
    if node is None:
        return dataclasses.replace(d, secrets=_consent_secrets(d.keys, path, None))
    m = node.mapping(schema.keys("consent"))
    keys = d.keys
    if "keys" in m:
        refs, seen = [], set()
        for n in m["keys"].seq():
            km = n.mapping(schema.keys("consent.keys[]"))
            kid = km["id"].string() if "id" in km else ""
            env = km["env"].string() if "env" in km else ""
            if not KEY_ID.fullmatch(kid):
                n.error("a key needs an `id` of 1-16 letters, digits, _ or -", "e.g. id: k2")
            elif kid in seen:
                km["id"].error(f"duplicate key id `{kid}`", "give each key its own id")
            if not ENV_NAME.fullmatch(env):
                n.error("a key needs `env`, the name of the environment variable holding it",
                        "e.g. env: PRIVPROXY_CONSENT_KEY_K2 (the key itself never goes in this file)")
            seen.add(kid)
            refs.append(consent.KeyRef(kid, env))
        if not refs:
            m["keys"].error("no keys listed", "list at least one {id, env}, or set `enabled: false`")
        else:
            keys = tuple(refs)
    revocations = None
    if "revocation_file" in m and m["revocation_file"].string():
        revocations = Revocations(_beside(path, m["revocation_file"].string()))
    ll = m["linked_log"].mapping(schema.keys("consent.linked_log")) if "linked_log" in m else {}
    days = ll["retention_days"].integer(90, 0) if "retention_days" in ll else 90
    enabled = m["enabled"].boolean(True) if "enabled" in m else True
    return consent.Settings(
        enabled=enabled,
        cookie=m["cookie"].string() if "cookie" in m else d.cookie,
        header=(m["header"].string() or "").lower() if "header" in m else "",
        keys=keys,
        secrets=_consent_secrets(keys, path, warnings if enabled else None),
        max_ttl_days=m["max_ttl_days"].integer(400, 1) if "max_ttl_days" in m else 400,
        honor_gpc=m["honor_gpc"].boolean(True) if "honor_gpc" in m else True,
        honor_dnt=m["honor_dnt"].boolean(True) if "honor_dnt" in m else True,
        tcf_cookie=m["tcf_cookie"].string() if "tcf_cookie" in m else d.tcf_cookie,
        withdrawal_cookie=m["withdrawal_cookie"].string() if "withdrawal_cookie" in m else d.withdrawal_cookie,
        revocations=revocations,
        linked_retention_days=days or None,
    )


def _consent_secrets(keys: tuple[consent.KeyRef, ...], path: str, warnings: list[str] | None) -> dict[str, bytes]:
    """Key material from the environment; the YAML names variables only. Short keys are refused."""
    out = {}
    for ref in keys:
        value = os.environ.get(ref.env, "")
        if len(value) >= 32:
            out[ref.id] = value.encode()
        elif warnings is not None and value:
            warnings.append(f"{path}: consent key {ref.id}: {ref.env} is shorter than 32 characters and is not used; "
                            "generate one with `openssl rand -hex 32`")
    if warnings is not None and keys and not any(os.environ.get(k.env) for k in keys):
        warnings.append(f"{path}: consent: the environment variable {keys[0].env} is not set, so no consent token "
                        "can be verified and nobody is linked to their identity; set it to use member consent")
    return out


def _rules(node: Node | None) -> tuple[Rule, ...]:
    if node is None:
        return ()
    rules, seen = [], set()
    for n in node.seq():
        m = n.mapping(schema.keys("rules[]"))
        rid = m["id"].string() if "id" in m else ""
        if not rid:
            n.error("a rule needs an `id`", "add `id: a-short-name`; metrics and explain name rules by it")
        elif rid in seen:
            m["id"].error(f"duplicate rule id `{rid}`", "give each rule its own id")
        seen.add(rid)
        if "action" not in m:
            n.error("a rule needs an `action`", f"one of: {', '.join(ACTIONS)}")
        action = m["action"].choice(ACTIONS, "drop") if "action" in m else "drop"
        scopes = frozenset(x.choice(SCOPES, "query") for x in m["scopes"].seq()) if "scopes" in m else frozenset()
        if not scopes:
            n.error("a rule needs `scopes`", f"a list from: {', '.join(SCOPES)}")
        names = m["names"].strings() if "names" in m else ()
        if not names:
            n.error("a rule needs `names`", "a list of field names; `*` and `?` are wildcards")
        controls = m["controls"].strings() if "controls" in m else ()
        for c, cn in zip(controls, m["controls"].seq() if "controls" in m else [], strict=False):
            if not CONTROL.match(c):
                cn.error(f"`{c}` is not a control", "controls are C1 to C15 (see the policies' CONTROLS.md)")
        rules.append(Rule(
            id=rid, action=action, scopes=scopes, names=names, controls=controls,
            report_only=m["report_only"].boolean(False) if "report_only" in m else False,
            why=m["why"].string() if "why" in m else "", line=n.line,
            regions=_regions(m["regions"]) if "regions" in m else frozenset(),
        ))
    return tuple(rules)


def _geo(node: Node | None, path: str) -> geo.Settings:
    if node is None:
        return geo.Settings()
    m = node.mapping(schema.keys("geo"))
    db = _beside(path, m["database"].string()) if "database" in m else None
    sc = m["small_cell"].mapping(schema.keys("geo.small_cell")) if "small_cell" in m else {}
    return geo.Settings(
        database=db or None,
        granularity=m["granularity"].choice(geo.GRANULARITIES, "subdivision") if "granularity" in m else "subdivision",
        small_cell_k=sc["k"].integer(5, 1) if "k" in sc else 5,
        window_seconds=sc["window_seconds"].integer(3600, 1) if "window_seconds" in sc else 3600,
    )


def _beside(path: str, value: str) -> str:
    """A file named in filters.yaml: relative to filters.yaml, not to wherever the proxy started."""
    if value and path not in ("<string>", "<built-in filters.yaml>") and not value.startswith("/"):
        return str(Path(path).resolve().parent / value)
    return value


def _logging(node: Node | None) -> LogSettings:
    if node is None:
        return LogSettings()
    m = node.mapping(schema.keys("logging"))
    fmt = m["format"].choice(schema.node("logging.format").enum, "json") if "format" in m else "json"
    r = m["rotation"].mapping(schema.keys("logging.rotation")) if "rotation" in m else {}
    size_mb = r["max_size_mb"].integer(0, 0) if "max_size_mb" in r else 0
    days = m["retention_days"].integer(30, 0) if "retention_days" in m else 30
    return LogSettings(fmt, Rotation(
        daily=r["daily"].boolean(True) if "daily" in r else True,
        max_bytes=size_mb * 1024 * 1024 if size_mb else None,
        retention_days=days or None,
    ))


def _regions(node: Node) -> frozenset[str]:
    codes = []
    for n in node.seq():
        code = n.string()
        if code not in geo.GROUPS and code not in _iso_countries():
            close = _region_guess(code)
            n.error(f"`{code}` is not a region", f"did you mean `{close}`?" if close else
                    "use ISO 3166-1 alpha-2 country codes (DE, JP, GB) or the groups EU, EEA")
        codes.append(code)
    return geo.expand(tuple(codes))


# Codes people write that ISO 3166-1 does not assign: UK is only "exceptionally reserved" (the country is GB),
# EL is the EU's own code for Greece (GR). XK (Kosovo) is user-assigned but GeoIP databases report it.
REGION_ALIASES = {"UK": "GB", "EL": "GR", "EUROPE": "EU", "EUROPEAN UNION": "EU"}
USER_ASSIGNED = frozenset({"XK"})


@functools.cache
def _iso_countries() -> frozenset[str]:
    import pycountry  # noqa: PLC0415 - its database is loaded only by files that name regions

    return frozenset(c.alpha_2 for c in pycountry.countries) | USER_ASSIGNED


def _region_guess(code: str) -> str:
    """The code meant by `UK`, `de`, `DEU`, `276` or `Germany`, or ""."""
    import pycountry  # noqa: PLC0415

    key = code.strip().upper()
    if key in REGION_ALIASES:
        return REGION_ALIASES[key]
    if key in geo.GROUPS or key in _iso_countries():
        return key
    try:
        return str(pycountry.countries.lookup(code.strip()).alpha_2)
    except LookupError:
        return ""


def _detectors(node: Node | None) -> scrub.Detectors:
    if node is None:
        return scrub.Detectors()
    m = node.mapping(schema.keys("detectors"))
    enabled = tuple(detectors.FINDERS)
    if "enabled" in m:
        enabled = tuple(x.choice(tuple(detectors.FINDERS), "email") for x in m["enabled"].seq())
    actions = dict(scrub.Detectors().actions)
    if "actions" in m:
        for name, an in m["actions"].items():
            if name not in detectors.FINDERS:
                an.error(f"unknown detector `{name}`", f"detectors: {', '.join(detectors.FINDERS)}")
                continue
            actions[name] = an.choice(scrub.DETECTOR_ACTIONS, "redact")
    return scrub.Detectors(enabled=enabled, actions=actions)


def _sensitive(node: Node | None) -> tuple[scrub.SensitivePath, ...]:
    if node is None:
        return ()
    out = []
    for n in node.seq():
        m = n.mapping(schema.keys("sensitive_paths[]"))
        pattern = m["pattern"].string() if "pattern" in m else ""
        if not pattern.startswith("/"):
            n.error("a sensitive path needs a `pattern` starting with /", "e.g. pattern: /health/**")
            continue
        sid = m["id"].string() if "id" in m else pattern
        replace = m["replace"].string() if "replace" in m else pattern.replace("**", "*")
        out.append(scrub.SensitivePath(sid, pattern, scrub.sensitive_regex(pattern), replace,
                                       m["controls"].strings() if "controls" in m else ("C10",)))
    return tuple(out)


__all__ = ["ConfigError", "ConfigErrors", "Policy", "default", "from_text", "load"]
