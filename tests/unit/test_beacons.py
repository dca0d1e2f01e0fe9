"""The `beacons:` section: which vendors and paths are beacons, and what each role does without consent (C4, C6)."""

from __future__ import annotations

import pytest

from privproxy import beacons, schema, vendors
from privproxy.errors import ConfigErrors
from privproxy.vendors.base import CONFIGURABLE_ROLES, Limits
from privproxy.yamlsrc import load_text, root
from tests.sections import parse_section, section_errors


def parse(text: str) -> beacons.Settings:
    return parse_section(beacons.parse, "beacons", text)


def errors_of(text: str) -> list[str]:
    return section_errors(beacons.parse, "beacons", text)


@pytest.mark.parametrize("text", ["{}\n", "beacons:\n", "beacons: {}\n"])
def test_left_out_it_is_the_settings_defaults(text):
    s = parse(text)
    assert s == beacons.Settings()
    assert s.roles == CONFIGURABLE_ROLES and s.enabled == frozenset(vendors.VENDORS) and s.limits == Limits()


def test_every_key():
    s = parse("beacons:\n  vendors: [ga4, matomo]\n  paths: {'*/tracker.php': matomo}\n  roles: {contact: redact}\n"
              "  max_body_kb: 64\n  max_decompressed_kb: 256\n")
    assert s.enabled == {"ga4", "matomo"} and s.paths == (("*/tracker.php", "matomo"),)
    assert s.roles == {**CONFIGURABLE_ROLES, "contact": "redact"}
    assert s.limits == Limits(max_body=64 * 1024, max_decompressed=256 * 1024)
    assert s.codec_for("/x/tracker.php").name == "matomo" and s.codec_for("/track") is None


def test_mistakes_are_positioned_with_a_fix():
    assert errors_of("beacons:\n  vendors: [gaa4]\n") == [
        "f.yaml:2:13: beacons.vendors[0]: `gaa4` is not allowed — did you mean `ga4`?"]
    assert errors_of("beacons:\n  paths: {tracker.php: matomo}\n")[0] == (
        "f.yaml:2:24: beacons.paths.tracker.php: `tracker.php` is not a path — collection paths start with / "
        "(or * to match any prefix)")
    assert "beacons.roles.contactt" in errors_of("beacons:\n  roles: {contactt: drop}\n")[0]
    assert errors_of("beacons:\n  max_body_kb: 0\n") == [
        "f.yaml:2:16: beacons.max_body_kb: 0 is out of range — use a value from 1 to None"]


def test_the_schema_states_the_settings_defaults():
    d = beacons.Settings()
    assert schema.node("beacons") is beacons.SCHEMA
    assert {r: schema.node(f"beacons.roles.{r}").default for r in d.roles} == d.roles
    assert schema.node("beacons.vendors").default == list(vendors.VENDORS)
    assert schema.node("beacons.max_body_kb").default * 1024 == d.limits.max_body
    assert schema.node("beacons.max_decompressed_kb").default * 1024 == d.limits.max_decompressed


# --- The analytics gateway: forward, forward_ca, scripts ------------------------------------------------------


def parse_at(text: str, path) -> beacons.Settings:
    top = root(load_text(text, str(path)), str(path))
    got = beacons.parse(top.mapping({"beacons"}).get("beacons"), str(path))
    top.errors.raise_if_any()
    return got


def test_forward_short_and_object_forms(tmp_path):
    from tests.certs import Authority

    Authority("f").root_pem(tmp_path / "ca.pem")
    s = parse_at("""beacons:
  forward:
    ga4: https://region1.google-analytics.com
    posthog: {url: "https://eu.i.posthog.com/", strip_prefix: /ingest/}
    matomo: {url: "http://10.0.0.5:8080/matomo", allow_http: true}
  forward_ca: ca.pem
  scripts: {/js/script.js: "https://plausible.io/js/script.js", /gtag.js: "https://gtm.example:8443/gtag/js?id=G-1"}
""", tmp_path / "filters.yaml")
    ga4, ph, mt = s.forward
    assert (ga4.vendor, ga4.endpoint.origin, ga4.endpoint.host_header) == ("ga4", "https://region1.google-analytics.com",
                                                                            "region1.google-analytics.com")
    assert ph.strip_prefix == "/ingest" and ph.endpoint.base == ""
    assert mt.endpoint.origin == "http://10.0.0.5:8080" and mt.target("/matomo.php?x=1") == "/matomo/matomo.php?x=1"
    assert s.forward_ca == (tmp_path / "ca.pem").read_bytes()
    assert s.forward_for("segment") is None and s.forward_for("posthog") is ph
    # the prefix makes the vendor's own paths under it its collection paths, in the configured spelling
    assert s.match("/Ingest/e/")[0].name == "posthog" and s.match("/Ingest/e/")[1] == "/ingest/e/"
    assert s.match("/ingest/unknown") is None and s.match("/e/")[0].name == "posthog"
    assert s.script_for("/js/script.js").endpoint.origin == "https://plausible.io"
    assert s.script_for("/JS/Script.js/") is not None and s.script_for("/js/other.js") is None
    assert s.script_for("/gtag.js").endpoint.host_header == "gtm.example:8443"


@pytest.mark.parametrize(("text", "message"), [
    ("beacons:\n  forward: {ga44: https://x.example}\n",
     "beacons.forward.ga44: `ga44` is not a vendor — did you mean `ga4`?"),
    ("beacons:\n  forward: {ga4: http://x.example}\n", "unencrypted"),
    ("beacons:\n  forward: {ga4: {url: http://x.example, allow_http: false}}\n", "allow_http: true"),
    ("beacons:\n  forward: {ga4: https://x.example/?a=1}\n", "without a query"),
    ("beacons:\n  forward: {ga4: {strip_prefix: /x}}\n", "`url` is missing"),
    ("beacons:\n  forward: {ga4: {url: https://x.example, strip_prefix: ingest}}\n", "canonical path prefix"),
    ("beacons:\n  forward: {ga4: {url: https://x.example, strip: /x}}\n", "unknown key `beacons.forward.ga4.strip`"),
    ("beacons:\n  forward_ca: missing.pem\n", "cannot read"),
    ("beacons:\n  scripts: {js/s.js: https://x.example/s.js}\n", "not a first-party path"),
    ("beacons:\n  scripts: {/a/../s.js: https://x.example/s.js}\n", "canonical form"),
    ("beacons:\n  scripts: {/s.js: http://x.example/s.js}\n", "https only"),
    ("beacons:\n  scripts: {/s.js: https://x.example/}\n", "names no script"),
])
def test_gateway_mistakes_are_refused_with_their_line(tmp_path, text, message):
    with pytest.raises(ConfigErrors) as e:
        parse_at(text, tmp_path / "f.yaml")
    assert any(message in str(x) and ":2:" in str(x) for x in e.value.errors), e.value.errors


def test_a_ca_file_without_a_certificate_is_refused(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigErrors) as e:
        parse_at("beacons:\n  forward_ca: ca.pem\n", tmp_path / "f.yaml")
    assert "holds no PEM CA certificate" in str(e.value)


def test_purposes_and_gvl_id(tmp_path):
    s = parse_at("""beacons:
  forward:
    meta_pixel: https://www.facebook.com
    ga4: {url: https://region1.google-analytics.com, purposes: [analytics, advertising, analytics], gvl_id: 755}
    plausible: {url: https://plausible.io}
""", tmp_path / "f.yaml")
    meta, ga4, plausible = s.forward
    assert meta.purposes == ("advertising",) and meta.gvl_id is None  # the shipped default for Meta's pixel
    assert ga4.purposes == ("analytics", "advertising") and ga4.gvl_id == 755
    assert plausible.purposes == ("analytics",)
    errors = errors_at("beacons:\n  forward: {ga4: {url: https://x.example, purposes: [ads], gvl_id: 0}}\n", tmp_path)
    assert any("`ads` is not allowed" in e for e in errors) and any("0 is out of range" in e for e in errors)


def errors_at(text: str, tmp_path) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        parse_at(text, tmp_path / "f.yaml")
    return [str(x) for x in e.value.errors]


def test_beacons_from_crawlers_can_be_dropped():
    from privproxy import policy
    from privproxy.errors import ConfigErrors

    assert policy.default().beacons.bots == "keep"  # shipped: processed like any other
    assert policy.from_text("version: 1\nbeacons: {bots: drop}\n", "f.yaml", secret=b"b").beacons.bots == "drop"
    with pytest.raises(ConfigErrors) as e:
        policy.from_text("version: 1\nbeacons:\n  bots: block\n", "f.yaml", secret=b"b")
    assert "f.yaml:3:9" in str(e.value) and "drop" in str(e.value)
