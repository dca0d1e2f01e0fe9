"""filters.yaml's JSON Schema is generated from the parser's own declaration and agrees with it (issue 3)."""

from __future__ import annotations

import json

import certifi
import jsonschema
import pytest
from ruamel.yaml import YAML

from privproxy import (beacons, client_ip, detectors, disclosure, fields, geo, https, policy, protections,
                       pseudonyms, schema, scrub, sites, truncate)
from privproxy.access_log import settings as log_settings
from privproxy.cli.schema import SHIPPED, render
from privproxy.consent import decision as consent
from privproxy.errors import ConfigErrors
from privproxy.yamlsrc import load_text, root
from tests.helpers import REPO


def as_data(text: str):
    return json.loads(json.dumps(YAML(typ="safe").load(text)))


def test_shipped_schema_file_is_the_generated_one():
    # Regenerate with: privproxy schema --write addons/privproxy/filters.schema.json
    assert SHIPPED.read_text(encoding="utf-8") == render()


def test_shipped_filters_yaml_is_valid_for_editors_and_parser():
    text = (REPO / "filters.yaml").read_text()
    jsonschema.Draft202012Validator(schema.json_schema()).validate(as_data(text))
    policy.from_text(text, "filters.yaml", secret=b"s")
    assert text.startswith("# yaml-language-server: $schema=addons/privproxy/filters.schema.json")


@pytest.mark.parametrize("text", [
    "version: 1\nhttps:\n  redirect_staus: 301\n",
    "version: 1\nrules:\n  - {id: a, action: delete, scopes: [query], names: [x]}\n",
    "version: 1\nrules:\n  - {id: a, action: drop, scopes: [querry], names: [x]}\n",
    "version: 1\nip_truncation: {ipv4_prefix: 33}\n",
    "version: 1\ndetectors: {enabled: [emial]}\n",
    "version: 1\npseudonymization: {rotation: monthly}\n",
    "version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x], controls: [C16]}\n",
    "version: 2\n",
    "verison: 1\n",
    "version: 1\nconsent: {keys: [{id: k1}]}\n",
    "version: 1\nconsent: {keys: [{id: bad id!, env: X}]}\n",
    "version: 1\nconsent: {honor_gcp: true}\n",
    "version: 1\nconsent: {linked_log: {retention_days: -1}}\n",
    "# a file emptied by a truncating editor: only comments left\n",
    "https: {redirect: true}\n",
    "version: 1\ndisable: [clik-ids]\n",
])
def test_editor_and_parser_reject_the_same_mistakes(text):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema.json_schema()).validate(as_data(text))
    with pytest.raises(ConfigErrors):
        policy.from_text(text, "t.yaml", secret=b"s")


def test_every_declared_key_is_accepted_by_the_parser():
    # A file that uses every key of the declaration at least once.
    text = """
version: 1
disable: [hsts, unknown-fields, detector:email, detector:phone, detector:ip, detector:card, detector:mynumber,
          detector:jwt, detector:iban, detector:corporate_number, detector:ssn, detector:vat,
          signal:dnt, signal:tcf, vendor:universal_analytics, vendor:snowplow, vendor:segment,
          vendor:mixpanel, vendor:amplitude, vendor:posthog, vendor:meta_pixel, vendor:adobe, vendor:plausible]
sites:
  shop: {hosts: [shop.example], upstream: "http://127.0.0.1:9", beacon_paths: {/m/collect: ga4}}
ip_truncation: {ipv4_prefix: 16, ipv6_prefix: 32}
client_ip: {trusted_proxies: [10.0.0.0/8], headers: [forwarded]}
https:
  redirect: true
  redirect_status: 301
  https_port: 8443
  exempt_paths: [/healthz]
  hsts: {max_age: 60, include_subdomains: false, preload: false}
  secure_cookies: true
  min_tls: TLS1_3
pseudonymization: {secret_env: MY_SECRET, rotation: hourly, key_file: /etc/privproxy/keys/pseudonym.json}
report_only: false
unknown_fields: keep
rules:
  - {id: a, action: hash, scopes: [query], names: [x], controls: [C2], why: w, report_only: true, regions: [EU, JP]}
detectors: {enabled: [email], actions: {email: hash}, phone_regions: [JP, DE],
            custom: [{id: member_no, pattern: "M-[0-9]{8}", action: hash, why: w}]}
referrer: {external: strip_query, internal: origin}
sensitive_paths:
  - {id: h, pattern: /h/**, replace: /h/*, controls: [C10]}
logging: {format: both, rotation: {daily: false, max_size_mb: 10}, retention_days: 14, query_allowlist: [q, "utm_*"]}
geo: {database: /var/lib/GeoIP/GeoLite2-City.mmdb, granularity: city, small_cell: {k: 3, window_seconds: 60}}
beacons:
  vendors: [ga4, matomo]
  paths: {"*/tracker.php": matomo}
  roles: {client_id: drop, session_id: drop, user_id: drop, device_id: drop, ip: drop, user_agent: drop,
          contact: redact, click_id: redact, fingerprint: redact, device: drop}
  max_body_kb: 64
  max_decompressed_kb: 256
  bots: drop
  forward: {ga4: "https://region1.google-analytics.com",
            posthog: {url: "https://eu.i.posthog.com", strip_prefix: /ingest, allow_http: false,
                      purposes: [analytics], gvl_id: 1234}}
  forward_ca: FORWARD_CA
  scripts: {/js/script.js: "https://plausible.io/js/script.js"}
consent:
  enabled: true
  cookie: member_consent
  header: X-Member-Consent
  keys: [{id: k2, env: CONSENT_K2}, {id: k1, env: CONSENT_K1}]
  max_ttl_days: 30
  honor_gpc: true
  honor_dnt: false
  tcf_cookie: ""
  withdrawal_cookie: consent_withdrawn
  revocation_file: /etc/privproxy/revoked.txt
  linked_log: {retention_days: 365}
disclosure:
  controller: Sample K.K.
  representative: Taro Yamada
  address: Tokyo
  contact: privacy@sample.example
  privacy_officer: Hanako Sato
  policy_url: https://sample.example/privacy
  effective_date: "2026-12-01"   # as an editor's YAML 1.2 reads it; unquoted works too (test_disclosure)
  purposes: [statistics]
  controls_file: CONTROLS_FILE
  en: {controller: Sample K.K., representative: T. Yamada, address: Tokyo, contact: a@sample.example,
       privacy_officer: H. Sato, policy_url: "https://sample.example/en/privacy", purposes: [statistics]}
  ja: {controller: 株式会社サンプル, representative: 山田太郎, address: 東京都, contact: 窓口,
       privacy_officer: 佐藤花子, policy_url: "https://sample.example/privacy", purposes: [統計]}
"""
    text = text.replace("FORWARD_CA", certifi.where())  # forward_ca is read (and checked) when parsed
    text = text.replace("CONTROLS_FILE", str(REPO / "docs" / "controls.yaml"))
    data = as_data(text)
    used = set(data)
    assert used == schema.keys(), "the sample must cover every section"
    for section in ("ip_truncation", "client_ip", "https", "pseudonymization", "detectors", "logging", "geo",
                    "beacons", "consent", "referrer"):
        assert set(data[section]) == schema.keys(section), section
    assert set(data["rules"][0]) == schema.keys("rules[]")
    assert set(data["sensitive_paths"][0]) == schema.keys("sensitive_paths[]")
    assert set(data["https"]["hsts"]) == schema.keys("https.hsts")
    assert set(data["beacons"]["roles"]) == schema.keys("beacons.roles")
    assert set(data["sites"]["shop"]) == schema.keys("sites{}")
    jsonschema.Draft202012Validator(schema.json_schema()).validate(data)
    p = policy.from_text(text, "t.yaml", secret=b"s")
    assert set(p.disabled) == set(data["disable"])  # every weakening here is named, and only those
    assert set(data["logging"]["rotation"]) == schema.keys("logging.rotation")
    assert set(data["geo"]["small_cell"]) == schema.keys("geo.small_cell")
    assert set(data["disclosure"]) == schema.keys("disclosure")
    assert set(data["disclosure"]["ja"]) == set(data["disclosure"]["en"]) == schema.keys("disclosure.ja")
    assert p.disclosure.text("controller", "ja") == "株式会社サンプル" and len(p.disclosure.controls.controls) == 15
    assert p.https.min_tls == "TLS1_3" and p.truncation.ipv4_prefix == 16
    assert set(data["detectors"]["custom"][0]) == schema.keys("detectors.custom[]")
    d = p.scrubber.detectors
    assert d.phone_regions[:2] == ("JP", "DE") and "FR" in d.phone_regions  # and the countries of `regions: [EU]`
    assert d.custom[0].id == "member_no" and d.action("member_no") == "hash"
    assert p.referrer.external == "strip_query" and p.referrer.internal == "origin" and p.beacons.bots == "drop"
    assert p.logging.query_allowlist.keeps("utm_source") and not p.logging.query_allowlist.keeps("page")
    assert p.logging.format == "both" and p.logging.rotation.max_bytes == 10 * 1024 * 1024
    assert not p.logging.rotation.daily and p.logging.rotation.retention_days == 14
    assert p.geo.granularity == "city" and p.geo.small_cell_k == 3 and p.geo.window_seconds == 60
    assert p.beacons.enabled == {"ga4", "matomo"} and p.beacons.roles["contact"] == "redact"
    assert p.beacons.limits.max_body == 64 * 1024 and p.beacons.limits.max_decompressed == 256 * 1024
    assert p.pseudonyms.key_file == "/etc/privproxy/keys/pseudonym.json" and p.pseudonyms.rotation == "hourly"
    assert p.beacons.codec_for("/x/tracker.php").name == "matomo"
    assert p.beacons.codec_for("/track") is None  # mixpanel is not enabled
    assert p.sites.for_host("shop.example").beacon_paths == (("/m/collect", "ga4"),)
    assert set(data["beacons"]["forward"]["posthog"]) == set(schema.node("beacons.forward{}").options[1].props)
    assert p.beacons.forward_for("posthog").target("/ingest/e/") == "/e/" and p.beacons.forward_ca
    assert p.beacons.script_for("/js/script.js").url == "https://plausible.io/js/script.js"
    assert set(data["consent"]["keys"][0]) == schema.keys("consent.keys[]")
    assert set(data["consent"]["linked_log"]) == schema.keys("consent.linked_log")
    c = p.consent
    assert c.cookie == "member_consent" and c.header == "x-member-consent" and c.active_key.id == "k2"
    assert [k.env for k in c.keys] == ["CONSENT_K2", "CONSENT_K1"] and c.max_ttl_days == 30
    assert c.honor_gpc and not c.honor_dnt and c.tcf_cookie == "" and c.withdrawal_cookie == "consent_withdrawn"
    assert str(c.revocations.path) == "/etc/privproxy/revoked.txt" and c.linked_retention_days == 365


def test_schema_defaults_are_the_parser_defaults():
    # With the baseline, a file of only `version: 1` gets the shipped settings: the schema's defaults must be them
    # (and the bare parser's defaults too, below), so an editor's hover tells what a left-out key means.
    p = policy.from_text("version: 1\n", "t.yaml", secret=b"s")
    bare = policy.from_text("version: 1\n", "t.yaml", secret=b"s", baseline=False)
    assert (bare.https, bare.truncation, bare.beacons.roles, bare.beacons.enabled, bare.consent, bare.logging,
            bare.scrubber.unknown) == (p.https, p.truncation, p.beacons.roles, p.beacons.enabled, p.consent,
                                       p.logging, p.scrubber.unknown)
    d, bd = p.scrubber.detectors, bare.scrubber.detectors
    assert d.enabled == bd.enabled and all(d.action(x) == bd.action(x) for x in d.enabled)
    assert schema.node("ip_truncation.ipv4_prefix").default == p.truncation.ipv4_prefix
    assert schema.node("ip_truncation.ipv6_prefix").default == p.truncation.ipv6_prefix
    assert schema.node("https.redirect_status").default == p.https.redirect_status
    assert schema.node("https.hsts.max_age").default == p.https.hsts_max_age
    assert schema.node("https.min_tls").default == p.https.min_tls
    assert schema.node("pseudonymization.rotation").default == p.pseudonyms.rotation
    assert schema.node("unknown_fields").default == p.scrubber.unknown
    assert tuple(schema.node("detectors.enabled").default) == p.scrubber.detectors.enabled
    c = p.consent
    assert schema.node("consent.cookie").default == c.cookie and schema.node("consent.header").default == c.header
    assert schema.node("consent.keys").default == [{"id": k.id, "env": k.env} for k in c.keys]
    assert schema.node("consent.max_ttl_days").default == c.max_ttl_days
    assert schema.node("consent.tcf_cookie").default == c.tcf_cookie
    assert schema.node("consent.withdrawal_cookie").default == c.withdrawal_cookie
    assert schema.node("consent.linked_log.retention_days").default == c.linked_retention_days
    assert schema.node("logging.format").default == p.logging.format
    assert schema.node("geo.granularity").default == p.geo.granularity
    assert schema.node("geo.small_cell.k").default == p.geo.small_cell_k
    assert schema.node("logging.retention_days").default == p.logging.rotation.retention_days
    for role, action in p.beacons.roles.items():
        assert schema.node(f"beacons.roles.{role}").default == action
    assert schema.node("beacons.max_body_kb").default * 1024 == p.beacons.limits.max_body
    assert set(schema.node("beacons.vendors").default) == p.beacons.enabled


def _section(name: str, text: str):
    top = root(load_text(text, "f.yaml"), "f.yaml")
    return top.mapping({name}).get(name)


SECTION_PARSERS = {  # each section's parse, beside its Settings (the one-hop rule); extra arguments as policy passes
    "sites": (sites.parse, sites.Sites()),
    "ip_truncation": (truncate.parse, truncate.Truncation()),
    "client_ip": (lambda n: client_ip.parse(n, truncate.Truncation()), client_ip.Settings()),
    "https": (https.parse, https.Settings()),
    "pseudonymization": (lambda n: pseudonyms.parse(n, "f.yaml"), pseudonyms.Settings()),
    "detectors": (detectors.parse, detectors.Settings()),
    "geo": (lambda n: geo.parse(n, "f.yaml"), geo.Settings()),
    "beacons": (beacons.parse, beacons.Settings()),
    "consent": (lambda n: consent.parse(n, "f.yaml", []), consent.Settings()),
    "logging": (log_settings.parse, log_settings.Settings()),
}


@pytest.mark.parametrize("name", SECTION_PARSERS)
def test_a_section_left_out_or_empty_is_its_settings_defaults(name):
    # Defaults are stated once, in the Settings dataclass: the parser and the schema read them from there.
    parse, defaults = SECTION_PARSERS[name]
    assert parse(None) == parse(_section(name, f"{name}: {{}}\n")) == parse(_section(name, f"{name}:\n")) == defaults


def test_the_schema_is_assembled_from_the_section_modules():
    modules = {"disable": protections, "sites": sites, "ip_truncation": truncate, "client_ip": client_ip,
               "https": https, "pseudonymization": pseudonyms, "rules": fields, "detectors": detectors, "geo": geo,
               "beacons": beacons, "consent": consent, "logging": log_settings, "disclosure": disclosure}
    for name, module in modules.items():
        assert schema.node(name) is module.SCHEMA, name
    assert schema.node("sensitive_paths") is scrub.SENSITIVE_PATHS
    assert schema.node("unknown_fields") is scrub.UNKNOWN_FIELDS and schema.node("report_only") is scrub.REPORT_ONLY
    assert policy.SECTIONS == tuple(schema.FILTERS.props) == (
        "version", "disable", "sites", "ip_truncation", "client_ip", "https", "pseudonymization", "report_only",
        "unknown_fields", "rules", "detectors", "sensitive_paths", "geo", "beacons", "consent", "logging", "referrer",
        "disclosure")
