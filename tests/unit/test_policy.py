"""filters.yaml parsing: strict schema, FILE:LINE:COL errors with a fix, immutable result (C8, C15)."""

from __future__ import annotations

import dataclasses

import pytest

from privproxy import policy
from privproxy.errors import ConfigError, ConfigErrors
from tests.helpers import REPO


def errors_of(text: str) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        policy.from_text(text, "f.yaml", secret=b"s")
    err = e.value
    return [str(x) for x in err.errors] if isinstance(err, ConfigErrors) else [str(err)]


def test_shipped_file_loads_and_every_rule_names_a_control():
    p = policy.load(REPO / "filters.yaml")
    assert p.rules.rules and all(r.controls for r in p.rules.rules)
    assert p.https.hsts == "max-age=63072000; includeSubDomains"
    assert p.truncation.ipv4_prefix == 24


def test_the_shipped_text_reads_the_same_without_the_baseline_comparison():
    # The shipped text skips building the baseline (it inherits nothing and weakens nothing); the same text with
    # a comment added takes the full path: both give the same policy.
    text = (REPO / "filters.yaml").read_text(encoding="utf-8")
    short = policy.from_text(text, "filters.yaml", secret=b"s")
    full = policy.from_text(text + "\n# a comment changes the hash, not the rules\n", "filters.yaml", secret=b"s")
    assert short.sha256 != full.sha256
    same = ("rules", "sites", "client_ip", "https", "truncation", "pseudonyms", "logging", "geo", "beacons", "consent",
            "referrer", "disclosure", "warnings", "disabled", "inherited", "inherited_sections")
    for name in same:
        assert getattr(short, name) == getattr(full, name), name
    assert short.scrubber.sensitive_paths == full.scrubber.sensitive_paths
    assert short.scrubber.detectors == full.scrubber.detectors


def test_default_policy_is_the_shipped_file():
    assert policy.default().sha256 == policy.load(REPO / "filters.yaml").sha256


def test_unknown_keys_with_did_you_mean():
    errs = errors_of("version: 1\nhttps:\n  hstss: {}\nrules:\n  - {id: a, action: drop, scopes: [query], nmes: [x]}\n")
    assert errs[0] == "f.yaml:3:3: unknown key `https.hstss` — did you mean `hsts`?"
    assert any(e.startswith("f.yaml:5:") and "`rules[0].nmes`" in e and "did you mean `names`?" in e for e in errs)


def test_wrong_types_and_values():
    errs = errors_of("version: 1\nip_truncation:\n  ipv4_prefix: 40\nhttps:\n  redirect: yes please\n"
                     "  min_tls: TLS1_1\nclient_ip:\n  trusted_proxies: [10.0.0.0/33]\n")
    text = "\n".join(errs)
    assert "f.yaml:3:16: ip_truncation.ipv4_prefix: 40 is out of range — use a value from 0 to 32" in text
    assert "f.yaml:5:13: https.redirect: expected true or false" in text
    assert "f.yaml:6:12: https.min_tls: `TLS1_1` is not allowed — did you mean `TLS1_3` or `TLS1_2`?" in text
    assert "f.yaml:8:21:" in text and "10.0.0.0/33" in text


def test_yaml_syntax_error_has_position():
    errs = errors_of("version: 1\nrules: [\n  - x\n")
    assert errs[0].startswith("f.yaml:") and "invalid YAML" in errs[0]


def test_rule_needs_fields_and_unique_ids():
    errs = errors_of("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x]}\n"
                     "  - {id: a, action: nuke, scopes: [everywhere], names: []}\n  - {controls: [C99]}\n")
    text = "\n".join(errs)
    assert "duplicate rule id `a`" in text
    assert "`nuke` is not allowed" in text and "`everywhere` is not allowed" in text
    assert "a rule needs `names`" in text and "a rule needs an `id`" in text and "`C99` is not a control" in text


def test_sites_and_upstreams():
    p = policy.from_text("version: 1\nsites:\n  shop:\n    hosts: [shop.example, '*.shop.example']\n"
                         "    upstream: http://10.0.0.5:8080\n", "f.yaml", secret=b"s")
    assert p.sites.for_host("SHOP.example:443").name == "shop"
    assert p.sites.for_host("a.shop.example").upstream.url == "http://10.0.0.5:8080"
    assert p.sites.for_host("other.example").name == "default"
    errs = errors_of("version: 1\nsites:\n  shop:\n    hosts: [a]\n    upstream: ftp://x\n")
    assert "f.yaml:5:15:" in errs[0] and "scheme must be http or https" in errs[0]


def test_policy_is_immutable():
    p = policy.from_text("version: 1\n", "f.yaml", secret=b"s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.https = None  # type: ignore[misc]


def test_not_a_mapping():
    assert "must be a mapping" in errors_of("- a\n- b\n")[0]


def test_region_rules_apply_to_their_countries_and_to_unknown_visitors(policy_from_yaml):
    # C14: stricter handling for EU visitors; an unlocated visitor gets the strictest set (fail closed)
    p = policy_from_yaml("""
version: 1
rules:
  - {id: eu-strict, action: drop, scopes: [query], names: [utm_id], regions: [EU]}
  - {id: jp-only, action: redact, scopes: [query], names: [area], regions: [JP]}
  - {id: all, action: drop, scopes: [query], names: [gclid]}
""")
    url = "/p?utm_id=1&area=tokyo&gclid=2&q=x"
    assert p.scrubber_for("DE").url(url, "path", []) == "/p?area=tokyo&q=x"
    assert p.scrubber_for("JP").url(url, "path", []) == "/p?utm_id=1&area=[redacted]&q=x"
    assert p.scrubber_for("US").url(url, "path", []) == "/p?utm_id=1&area=tokyo&q=x"
    assert p.scrubber_for("").url(url, "path", []) == "/p?area=[redacted]&q=x"
    assert p.scrubber_for("DE") is p.scrubber_for("DE")


def test_region_codes_are_validated(policy_from_yaml):
    import pytest

    from privproxy.errors import ConfigErrors

    with pytest.raises(ConfigErrors, match="`Europe` is not a region"):
        policy_from_yaml("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x], "
                         "regions: [Europe]}\n")


@pytest.mark.parametrize("code, guess", [("UK", "GB"), ("EL", "GR"), ("de", "DE"), ("DEU", "DE"), ("Germany", "DE"),
                                         ("Europe", "EU"), ("eea", "EEA")])
def test_region_codes_are_iso_3166_with_a_did_you_mean(code, guess):
    errs = errors_of("version: 1\nrules:\n"
                     f"  - {{id: a, action: drop, scopes: [query], names: [x], regions: [{code}]}}\n")
    assert errs == [f"f.yaml:3:{errs[0].split(':')[2]}: rules[0].regions[0]: `{code}` is not a region — "
                    f"did you mean `{guess}`?"]


def test_region_codes_known_and_unknown():
    p = policy.from_text("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x], "
                         "regions: [GB, GR, JP, EEA, XK]}\n", "f.yaml", secret=b"s")
    assert {"GB", "GR", "JP", "NO", "DE", "XK"} <= p.rules.rules[0].regions  # XK: Kosovo, as GeoIP reports it
    errs = errors_of("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [x], regions: [ZZ]}\n")
    assert errs[0].endswith("`ZZ` is not a region — use ISO 3166-1 alpha-2 country codes (DE, JP, GB) or the groups "
                            "EU, EEA")


# --- fail-closed configuration (issue 17 item 6) --------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "# only\n# comments\n", "---\n", "---\n# c\n...\n"])
def test_an_empty_or_comment_only_file_is_refused(text):
    # a truncating editor's save or an empty ConfigMap key must never become "no rules"
    errs = errors_of(text)
    assert len(errs) == 1 and errs[0].startswith("f.yaml:1:1: the file is empty (or holds only comments)")
    assert "write `version: 1`" in errs[0]


@pytest.mark.parametrize("text", ["rules: []\n", "# comment\nhttps: {redirect: true}\n", "{}\n"])
def test_a_file_without_version_is_refused(text):
    errs = errors_of(text)
    assert "f.yaml:1:1: `version` is missing — add `version: 1` as the first line" in errs[0]


def test_version_without_a_value_is_refused():
    assert errors_of("# c\nversion:\n") == ["f.yaml:2:1: version: no value — write `version: 1`"]


def test_a_file_of_only_version_gets_every_shipped_protection():
    shipped = policy.load(REPO / "filters.yaml")
    p = policy.from_text("version: 1\n", "f.yaml", secret=b"s")
    assert [r.id for r in p.rules.rules] == [r.id for r in shipped.rules.rules]
    assert p.rules.rules == tuple(dataclasses.replace(r, line=0) for r in shipped.rules.rules)
    assert [sp.id for sp in p.scrubber.sensitive_paths] == [sp.id for sp in shipped.scrubber.sensitive_paths]
    assert p.inherited == ("click-ids", "contact-params", "personal-names", "visitor-ids", "secrets",
                           "tracking-cookies", "device-detail", "health", "medical", "recruiting", "careers-apply",
                           "inquiry")
    assert "https" in p.inherited_sections and "beacons" in p.inherited_sections and p.disabled == ()
    url = p.scrubber.url("/p?gclid=G1&uid=U1&email=a%40b.example", "query", [])
    assert "G1" not in url and "U1" not in url and "a%40b" not in url
    assert (p.https, p.truncation, p.beacons.enabled, p.consent.honor_gpc) == (
        shipped.https, shipped.truncation, shipped.beacons.enabled, shipped.consent.honor_gpc)


def test_sections_and_rules_left_out_keep_the_shipped_ones():
    p = policy.from_text("version: 1\nhttps: {redirect_status: 301}\nrules: []\nsensitive_paths: []\n", "f.yaml",
                         secret=b"s")
    assert p.https.redirect_status == 301 and p.https.hsts_max_age == 63072000
    assert {r.id for r in p.rules.rules} >= {"click-ids", "visitor-ids"} and len(p.scrubber.sensitive_paths) == 5
    assert "https" not in p.inherited_sections and "rules" not in p.inherited_sections


def test_shipped_rules_merge_by_id_new_ids_add():
    p = policy.from_text("""version: 1
rules:
  - {id: utm, action: drop, scopes: [query], names: ["utm_*"]}
  - {id: visitor-ids, action: drop, scopes: [query, referrer], names: [uid, user_id, userid, customer_id,
     customerid, member_id, memberid, visitor_id, client_id, cid, device_id, deviceid, anonymous_id,
     anonymousid, distinct_id, shopper_id]}
""", "f.yaml", secret=b"s")
    ids = [r.id for r in p.rules.rules]
    assert ids[:2] == ["utm", "visitor-ids"] and ids.count("visitor-ids") == 1 and "click-ids" in ids
    assert p.rules.find("query", "uid").action == "drop" and p.rules.find("query", "uid").line == 4
    assert p.rules.find("query", "gclid").id == "click-ids" and p.rules.find("query", "gclid").line == 0
    assert "visitor-ids" not in p.inherited and "click-ids" in p.inherited


@pytest.mark.parametrize("yaml_text, where, protection", [
    ("rules:\n  - {id: mine, action: keep, scopes: [query], names: [gclid]}\n", "3:5: rules[0]", "click-ids"),
    ("rules:\n  - {id: mine, action: hash, scopes: [cookie], names: [_fbc]}\n", "3:5: rules[0]", "click-ids"),
    ("rules:\n  - {id: all, action: keep, scopes: [cookie], names: ['_hj*']}\n", "3:5: rules[0]", "tracking-cookies"),
    ("rules:\n  - {id: mine, action: keep, scopes: [query], names: [uid], regions: [JP]}\n", "3:5: rules[0]",
     "visitor-ids"),
    ("rules:\n  - {id: secrets, action: drop, scopes: [query], names: [token]}\n", "3:5: rules[0]", "secrets"),
    ("rules:\n  - {id: secrets, action: drop, scopes: [query], names: [token, access_token, id_token, refresh_token,"
     " auth, authorization, code, state, password, pass, passwd, pwd, secret, api_key, apikey, key, sig, signature,"
     " session, sessionid, session_id, sid, jsessionid, phpsessid, 'x-amz-*'], regions: [EU]}\n", "3:5: rules[0]",
     "secrets"),
    ("rules:\n  - {id: tracking-cookies, action: hash, scopes: [cookie, set_cookie], names: [_ga], "
     "report_only: true}\n", "3:5: rules[0]", "tracking-cookies"),
    ("sensitive_paths:\n  - {id: health, pattern: /healthy/**}\n", "3:5: sensitive_paths[0]", "health"),
    ("https: {redirect: false}\n", "2:19: https.redirect", "https-redirect"),
    ("https: {exempt_paths: [/]}\n", "2:23: https.exempt_paths", "https-redirect"),
    ("https: {hsts: {max_age: 0}}\n", "2:25: https.hsts.max_age", "hsts"),
    ("https: {hsts: {include_subdomains: false}}\n", "2:36: https.hsts.include_subdomains", "hsts"),
    ("https: {secure_cookies: false}\n", "2:25: https.secure_cookies", "secure-cookies"),
    ("ip_truncation: {ipv6_prefix: 64}\n", "2:30: ip_truncation.ipv6_prefix", "ip-truncation"),
    ("ip_truncation: {ipv4_prefix: 32}\n", "2:30: ip_truncation.ipv4_prefix", "ip-truncation"),
    ("unknown_fields: keep\n", "2:17: unknown_fields", "unknown-fields"),
    ("report_only: true\n", "2:14: report_only", "report-only"),
    ("detectors: {enabled: [email, jwt, ip, iban, card, corporate_number, ssn, vat, phone]}\n",
     "2:22: detectors.enabled", "detector:mynumber"),
    ("detectors: {actions: {ip: hash}}\n", "2:27: detectors.actions.ip", "detector:ip"),
    ("detectors: {phone_regions: [GB]}\n", "2:28: detectors.phone_regions", "phone-regions"),
    ("detectors:\n  phone_regions: [US, DE]\n", "3:18: detectors.phone_regions", "phone-regions"),
    ("beacons:\n  vendors: [ga4, universal_analytics, snowplow, segment, mixpanel, amplitude, posthog, meta_pixel,"
     " adobe, plausible]\n", "3:12: beacons.vendors", "vendor:matomo"),
    ("beacons: {roles: {user_id: keep}}\n", "2:28: beacons.roles.user_id", "role:user_id"),
    ("beacons: {roles: {contact: hash}}\n", "2:28: beacons.roles.contact", "role:contact"),
    ("consent: {honor_gpc: false}\n", "2:22: consent.honor_gpc", "signal:gpc"),
    ("consent: {honor_dnt: false}\n", "2:22: consent.honor_dnt", "signal:dnt"),
    ("consent: {tcf_cookie: ''}\n", "2:23: consent.tcf_cookie", "signal:tcf"),
    ("consent: {withdrawal_cookie: ''}\n", "2:30: consent.withdrawal_cookie", "signal:withdrawal"),
])
def test_weakening_a_shipped_protection_takes_disable(yaml_text, where, protection):
    text = "version: 1\n" + yaml_text
    errs = errors_of(text)
    assert len(errs) == 1 and errs[0].startswith(f"f.yaml:{where}: "), errs
    assert f"add {protection} to disable: [...] at the top level" in errs[0]
    p = policy.from_text(f"version: 1\ndisable: [{protection}]\n" + yaml_text, "f.yaml", secret=b"s")
    assert p.disabled == (protection,)
    assert f"shipped protections switched off by `disable:`: {protection}" in p.warnings[-1]


def test_strengthening_needs_no_disable():
    p = policy.from_text("""version: 1
ip_truncation: {ipv4_prefix: 16, ipv6_prefix: 32}
https: {min_tls: TLS1_3, hsts: {max_age: 63072001, preload: true}}
unknown_fields: drop
detectors: {actions: {email: drop, ip: redact}}
beacons: {roles: {client_id: drop, ip: drop, device: redact}}
consent: {enabled: false, honor_gpc: false}
rules:
  - {id: visitor-ids, action: drop, scopes: [query, referrer], names: [uid, user_id, userid, customer_id, customerid,
     member_id, memberid, visitor_id, client_id, cid, device_id, deviceid, anonymous_id, anonymousid, distinct_id]}
  - {id: more, action: redact, scopes: [query, cookie], names: [gclid, _ga, "utm_*"]}
  - {id: eu, action: drop, scopes: [query], names: [ref], regions: [EU]}
sensitive_paths:
  - {id: health, pattern: /health**}
""", "f.yaml", secret=b"s")
    assert p.disabled == () and p.rules.find("query", "gclid").id == "more"


def test_disabling_a_shipped_rule_or_path_removes_it_and_is_recorded():
    p = policy.from_text("version: 1\ndisable: [click-ids, medical]\n", "f.yaml", secret=b"s")
    assert p.disabled == ("click-ids", "medical")
    assert "click-ids" not in {r.id for r in p.rules.rules} and p.rules.find("query", "gclid") is None
    assert "medical" not in {sp.id for sp in p.scrubber.sensitive_paths} and "click-ids" not in p.inherited
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.disabled = ()  # type: ignore[misc]
    # a redefinition of a disabled id is the file's own, unchecked
    q = policy.from_text("version: 1\ndisable: [click-ids]\nrules:\n  - {id: click-ids, action: drop, "
                         "scopes: [query], names: [gclid]}\n", "f.yaml", secret=b"s")
    assert q.disabled == ("click-ids",) and q.rules.find("query", "gclid").line == 4
    assert q.rules.find("query", "fbclid") is None


def test_disable_ids_are_checked_with_did_you_mean_and_no_effect_is_a_warning():
    errs = errors_of("version: 1\ndisable: [clik-ids, vendor:ga5, HSTS]\n")
    assert errs[0] == "f.yaml:2:11: disable[0]: `clik-ids` is not allowed — did you mean `click-ids`?"
    assert "`vendor:ga5` is not allowed — did you mean `vendor:ga4`" in errs[1]
    assert "`HSTS` is not allowed" in errs[2]
    p = policy.from_text("version: 1\ndisable: [hsts, click-ids]\nrules:\n  - {id: click-ids, action: drop, scopes: "
                         "[query, cookie, set_cookie], names: [gclid]}\n", "f.yaml", secret=b"s")
    assert p.disabled == ("click-ids",)
    assert any(w.startswith("f.yaml:2:11: disable: `hsts` has no effect") for w in p.warnings)


def test_every_weakening_is_listed_in_one_pass():
    errs = errors_of("version: 1\nhttps: {redirect: false, secure_cookies: false}\nreport_only: true\n"
                     "rules:\n  - {id: x, action: keep, scopes: [query], names: [gclid, uid]}\n")
    text = "\n".join(errs)
    for pid in ("https-redirect", "secure-cookies", "report-only", "click-ids", "visitor-ids"):
        assert f"add {pid}" in text or f", {pid}" in text, pid
    assert len(errs) == 4  # the rule's two weakenings are one error on rules[0]


def test_bare_parse_is_the_file_alone():
    p = policy.from_text("version: 1\nunknown_fields: keep\n", "f.yaml", secret=b"s", baseline=False)
    assert p.rules.rules == () and p.scrubber.sensitive_paths == () and p.scrubber.unknown == "keep"
    assert p.inherited == () and p.inherited_sections == () and p.disabled == ()
    with pytest.raises(ConfigErrors, match="the file is empty"):
        policy.from_text("", "f.yaml", baseline=False)


# The tracking cookies the shipped rules must know, as the vendors name them (issue 17 item 7).
TRACKING = ["_hjid", "_hjSessionUser_123456", "_hjSession_123456", "_hjFirstSeen", "__utma", "__utmb", "__utmc",
            "__utmt", "__utmv", "__hstc", "__hssc", "__hssrc", "hubspotutk", "ajs_user_traits", "ajs_group_id",
            "_clck", "_clsk", "_uetvid", "_uetsid", "_mkto_trk", "_rdt_uuid", "_tt_enable_cookie", "_ttp",
            "_pin_unauth", "_scid", "li_sugr", "bcookie", "_dc_gtm_UA-123-1", "IDE", "MUID", "_an_uid",
            "_hp2_id.123", "_hp2_ses_props.123", "_derived_epik", "ab.storage.deviceId.abc-123",
            "ab.storage.userId.abc-123", "optimizelyEndUserId", "_vwo_uuid", "_vwo_uuid_v2", "_cioid",
            "intercom-id-abc123", "intercom-session-abc123", "__kla_id", "_fbp", "_ga", "_ga_ABC123"]
CLICK_ID_COOKIES = ["_fbc", "__utmz", "_epik", "_uetmsclkid", "_gcl_aw", "_gac_UA-1-1"]


@pytest.mark.parametrize("name", TRACKING)
def test_shipped_rules_pseudonymize_tracking_cookies(name):
    rules = policy.default().rules
    for scope in ("cookie", "set_cookie"):
        r = rules.find(scope, name)
        assert r is not None and r.id == "tracking-cookies", (scope, name, r)


@pytest.mark.parametrize("name", CLICK_ID_COOKIES)
def test_shipped_rules_drop_cookies_that_hold_a_click_id(name):
    rules = policy.default().rules
    for scope in ("cookie", "set_cookie"):
        assert rules.find(scope, name).id == "click-ids", (scope, name)
