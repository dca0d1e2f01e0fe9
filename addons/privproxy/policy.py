"""filters.yaml -> Policy: parsed once into frozen objects; a new file yields a new Policy, swapped whole.

Each section is parsed by its own module (`parse` beside its Settings); this module reads the file, checks the
version, completes it from the shipped baseline (privproxy.protections) and builds the Policy.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privproxy import (beacons, client_ip, detectors, fields, geo, https, protections, pseudonyms, schema, scrub,
                       sites, truncate)
from privproxy import disclosure
from privproxy import generalize, referrer
from privproxy.access_log import settings as log_settings
from privproxy.consent import decision as consent
from privproxy.errors import ConfigError, ConfigErrors
from privproxy.fields import Rule, RuleSet
from privproxy.pseudonyms import Pseudonymizer
from privproxy.yamlsrc import BUILTIN, Node, load_text, root

SECTIONS = tuple(schema.FILTERS.props)
_generation = itertools.count(1)


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
    logging: log_settings.Settings = field(default_factory=lambda: log_settings.Settings())
    geo: geo.Settings = field(default_factory=lambda: geo.Settings())
    beacons: beacons.Settings = field(default_factory=lambda: beacons.Settings())
    consent: consent.Settings = field(default_factory=lambda: consent.Settings())
    referrer: referrer.Settings = field(default_factory=lambda: referrer.Settings())
    disclosure: disclosure.Settings = field(default_factory=lambda: disclosure.Settings())
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
                          hint="check the path of your filters.yaml (a relative path is read from the current "
                               "directory)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the file: {e}", path=str(p),
                          hint="check permissions and that it is UTF-8") from None
    policy = from_text(text, str(p))
    generalize.warm()  # the proxy's first request (and every filter-log worker) finds ua-parser ready
    return policy


DEFAULT_FILE = Path(__file__).with_name("default_filters.yaml")
# Sections taken whole from the shipped file when a filters.yaml leaves them out; rules and sensitive paths are
# merged by id instead (protections.merge).
# `disclosure` names the company publishing the notice: never taken from the shipped file.
INHERITED_SECTIONS = tuple(x for x in SECTIONS if x not in ("version", "disable", "rules", "sensitive_paths",
                                                            "disclosure"))


def default() -> Policy:
    """The shipped policy (the repository's filters.yaml), used when no filters.yaml is given or found."""
    policy = from_text(DEFAULT_FILE.read_text(encoding="utf-8"), BUILTIN)
    generalize.warm()  # as load() does: the first record does not wait for ua-parser
    return policy


@functools.cache
def _shipped() -> tuple[str, str, Any]:
    """The shipped file's text, its sha256 and its YAML, read and parsed once per process.

    Loading a filters.yaml needed three parses of the shipped text: the baseline, the sections a file leaves out,
    and the file itself when it is the shipped one (the usual deployment; `filter-log --config filters.yaml`).
    The YAML reader is pure Python, about 0.07 s a parse, all of it serial before filter-log's workers start, so
    they share this one. Nothing writes into parsed YAML (Node only reads it), so sharing changes no result."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    return text, _sha256(text), load_text(text, BUILTIN)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _baseline() -> Policy:
    """The shipped file read alone: what every filters.yaml is compared with and completed from."""
    return from_text(_shipped()[0], BUILTIN, secret=b"baseline", baseline=False)


@functools.cache
def _shipped_sections() -> dict[str, Node]:
    return root(_shipped()[2], BUILTIN).mapping(set(SECTIONS))


def from_text(text: str, path: str = "<string>", *, secret: bytes | None = None, baseline: bool = True) -> Policy:
    """Parse a filters.yaml. With the baseline (always, outside tests), sections it leaves out keep the shipped
    settings, shipped rules and sensitive paths are merged by id, and weakening a shipped protection is an error
    unless `disable:` names it (privproxy.protections). `baseline=False` reads the text alone: for the shipped
    file itself and for unit tests that need a bare rule set."""
    sha256 = _sha256(text)
    # The shipped text (by its hash) is parsed once per process (_shipped); a parse error names `path`, but the
    # shipped text has none, so its parse is the same whatever the path. Bare unit-test texts never touch it.
    data = _shipped()[2] if (baseline or path == BUILTIN) and sha256 == _shipped()[1] else load_text(text, path)
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
    # The shipped text itself (the usual deployment, and filter-log's default) needs no baseline: it inherits
    # nothing and cannot weaken what it is. Building the baseline too would build its policy twice, serially
    # before filter-log's workers start. A `disable:` list still goes through the comparison.
    if baseline and data is _shipped()[2] and "disable" not in s:
        baseline = False
    base = _baseline() if baseline else None
    shipped = _shipped_sections() if baseline else {}

    def section(name: str) -> Node | None:
        return s[name] if name in s else shipped.get(name)

    listed = protections.parse(s.get("disable"))
    truncation = truncate.parse(section("ip_truncation"))
    psettings = pseudonyms.parse(section("pseudonymization"), path)
    own_rules, own_paths = fields.parse_rules(s.get("rules")), scrub.parse_sensitive_paths(s.get("sensitive_paths"))
    rules, paths, inherited = own_rules, own_paths, ()
    if base is not None:
        rules, paths, inherited = protections.merge(own_rules, own_paths, base, frozenset(listed))
    warnings: list[str] = []
    scrubber = scrub.Scrubber(
        rules=RuleSet.build(rules),
        detectors=detectors.parse(section("detectors"), frozenset().union(*(r.regions for r in rules))),
        sensitive_paths=paths,
        pseudonymizer=Pseudonymizer(psettings, secret=secret),
        truncation=truncation,
        unknown=scrub.UNKNOWN_FIELDS.value(section("unknown_fields")),
        report_only=scrub.REPORT_ONLY.value(section("report_only")),
    )
    policy = Policy(
        path=path,
        sha256=sha256,
        generation=next(_generation),
        sites=sites.parse(section("sites")),
        client_ip=client_ip.parse(section("client_ip"), truncation),
        https=https.parse(section("https")),
        truncation=truncation,
        pseudonyms=psettings,
        scrubber=scrubber,
        logging=log_settings.parse(section("logging")),
        geo=geo.parse(section("geo"), path),
        beacons=beacons.parse(section("beacons"), path),
        consent=consent.parse(section("consent"), path, warnings),
        referrer=referrer.parse(section("referrer")),
        disclosure=disclosure.parse(s.get("disclosure"), path),
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


__all__ = ["ConfigError", "ConfigErrors", "Policy", "default", "from_text", "load"]
