"""The `sites:` section: which origin serves which Host, and each site's own collection paths."""

from __future__ import annotations

import pytest

from privproxy import sites
from tests.sections import parse_section, section_errors


def parse(text: str) -> sites.Sites:
    return parse_section(sites.parse, "sites", text)


def errors_of(text: str) -> list[str]:
    return section_errors(sites.parse, "sites", text)


def test_left_out_only_the_default_site():
    assert parse("{}\n") == parse("sites:\n") == sites.Sites()
    assert sites.Sites().for_host("any.example").name == "default"


def test_sites_hosts_upstreams_and_collection_paths():
    s = parse("sites:\n  shop:\n    hosts: [Shop.Example, '*.shop.example']\n    upstream: http://127.0.0.1:8080\n"
              "    beacon_paths: {/m/collect: ga4}\n  default:\n    upstream: https://[::1]\n")
    shop = s.for_host("a.shop.example:443")
    assert shop.name == "shop" and shop.hosts == ("shop.example", "*.shop.example")
    assert shop.upstream.url == "http://127.0.0.1:8080" and shop.beacon_paths == (("/m/collect", "ga4"),)
    assert s.for_host("other.example").upstream.url == "https://[::1]:443"
    assert s.names == ("shop", "default")


def test_a_site_needs_hosts_and_an_upstream():
    errs = errors_of("sites:\n  shop: {beacon_paths: {m/collect: gaa4}}\n")
    assert errs == [
        "f.yaml:2:9: sites.shop: a site needs an `upstream` — add `upstream: http://host:port`",
        "f.yaml:2:9: sites.shop: a site needs `hosts` — add `hosts: [www.example.com]`",
        "f.yaml:2:36: sites.shop.beacon_paths.m/collect: `m/collect` is not a path — collection paths start "
        "with / (or * to match any prefix)",
        "f.yaml:2:36: sites.shop.beacon_paths.m/collect: `gaa4` is not allowed — did you mean `ga4`?",
    ]
    assert "scheme must be http or https" in errors_of("sites:\n  shop: {hosts: [a], upstream: ftp://x}\n")[0]


@pytest.mark.parametrize("url, problem", [("ftp://x", "scheme"), ("http://", "host is missing"),
                                          ("http://a/x", "without a path"), ("http://a:99999", "bad port")])
def test_parse_upstream_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match=problem):
        sites.parse_upstream(url)


@pytest.mark.parametrize("header, host", [("Example.COM:8443", "example.com"), ("[::1]:80", "::1"), ("::1", "::1")])
def test_host_only(header, host):
    assert sites.host_only(header) == host
