"""Referrers in the log: another site's cut to its origin, the site's own through the URL rules (C2, C9)."""

from __future__ import annotations

import pytest

from privproxy import pipeline, policy, referrer
from privproxy.errors import ConfigErrors
from privproxy.outcome import Outcome
from tests.helpers import REPO

SHIPPED = policy.from_text((REPO / "filters.yaml").read_text(encoding="utf-8"), "filters.yaml", secret=b"ref")
SEARCH = "https://www.google.com/search?q=john+doe+555-123-4567&oq=john"


def logged(p: policy.Policy, ref: str, host: str = "shop.example") -> str:
    """The referrer of the record the pipeline writes for a GET / with this Host and Referer."""
    index = {"host": [host]}
    view = pipeline.RequestView(peer="198.51.100.7", tls=True, method="GET", host=host, path="/",
                                get_all=lambda name: index.get(name, []), fields=(("Host", host),))
    state = pipeline.begin(view, p)
    record = pipeline.log_record(state, view, 200, 1, Outcome.FORWARDED, state.started, referrer=ref)
    CUTS[ref] = [(c.before, c.after) for c in state.changes if c.rule == "referrer"]
    return record.referrer


CUTS: dict[str, list[tuple[str, str | None]]] = {}  # each call's `referrer` changes (metrics and explain count them)


@pytest.mark.parametrize("level,expected", [
    ("keep", SEARCH), ("strip_query", "https://www.google.com/search"), ("origin", "https://www.google.com"),
    ("drop", "")])
def test_matomo_levels(level, expected):
    s = referrer.Settings(external=level)
    assert s.reduce(SEARCH, lambda h: h == "shop.example") == expected
    assert s.reduce("https://shop.example/p?q=1", lambda h: h == "shop.example") == "https://shop.example/p?q=1"


@pytest.mark.parametrize("authority,host", [
    ("Shop.Example", "shop.example"), ("u:pw@shop.example:8443", "shop.example"), ("[2001:DB8::1]:443", "2001:db8::1"),
    ("shop.example.", "shop.example"), ("", "")])
def test_host_name(authority, host):
    assert referrer.host_name(authority) == host


def test_a_search_referrer_reaches_the_log_as_its_origin():
    assert logged(SHIPPED, SEARCH) == "https://www.google.com"
    assert CUTS[SEARCH] == [(SEARCH, "https://www.google.com")]
    # credentials never pass, an address host is truncated like every other (Scrubber.url on what is kept)
    assert logged(SHIPPED, "https://u:pw@203.0.113.77:8080/p?q=x") == "https://203.0.113.0:8080"
    assert logged(SHIPPED, "android-app://com.google.android.gm/") == "android-app://com.google.android.gm"


def test_the_sites_own_referrers_keep_their_path_through_the_rules():
    assert logged(SHIPPED, "https://shop.example/search?q=watch&email=j%40x.example") == \
        "https://shop.example/search?q=watch&email=[redacted]"
    assert CUTS["https://shop.example/search?q=watch&email=j%40x.example"] == []
    assert logged(SHIPPED, "https://SHOP.example:443/health/clinic?x=1") == "https://SHOP.example:443/health/*"
    assert logged(SHIPPED, "/relative/page?uid=member-1").startswith("/relative/page?uid=pp_")  # no host: internal
    hosts = policy.from_text("version: 1\nsites:\n  default: {hosts: [www.shop.example, '*.cdn.example']}\n",
                             "f.yaml", secret=b"ref")
    assert logged(hosts, "https://a.cdn.example/x?q=1") == "https://a.cdn.example/x?q=1"
    assert logged(hosts, "https://www.shop.example/x?q=1", host="other.example") == "https://www.shop.example/x?q=1"


def test_levels_from_filters_yaml_and_errors_name_the_line():
    p = policy.from_text("version: 1\nreferrer: {external: strip_query, internal: origin}\n", "f.yaml", secret=b"r")
    assert logged(p, SEARCH) == "https://www.google.com/search"
    assert logged(p, "https://shop.example/a/b?c=1") == "https://shop.example"
    with pytest.raises(ConfigErrors) as e:
        policy.from_text("version: 1\nreferrer:\n  external: host_only\n", "f.yaml", secret=b"r")
    assert "f.yaml:3:13" in str(e.value) and "strip_query" in str(e.value)
    assert policy.default().referrer == referrer.Settings("origin", "keep")  # the shipped and the default


@pytest.mark.parametrize("query,same", [("q=watch&email=j%40x.example", True), ("q=watch&uid=member-4711", False),
                                        ("q=watch&gclid=EAIa&cid=918273645.1700000000", False), ("q=watch", True)])
def test_a_beacons_referer_reaches_the_vendor_and_the_log_as_each_scrubs_it(query, same):
    # One Referer, two destinations: scrubbed once when nothing in it is pseudonymized (pipeline.scrub_url),
    # and the vendor and the log still get exactly what their own scrubbing gives, each change counted for each.
    ref = f"https://shop.example/cart?{query}"
    fields = (("Host", "shop.example"), ("Referer", ref))
    index = {k.lower(): [v] for k, v in fields}
    view = pipeline.RequestView(peer="198.51.100.7", tls=True, method="GET", host="shop.example",
                                path="/g/collect?v=2&tid=G-1&en=page_view", get_all=lambda n: index.get(n, []),
                                fields=fields)
    state = pipeline.begin(view, SHIPPED)
    out = pipeline.forward_beacon(state, view, b"")
    record = pipeline.log_record(state, view, 204, 0, Outcome.FORWARDED, state.started, referrer=ref)
    vendor_changes: list = []
    log_changes: list = []
    to_vendor = state.scrubber.to("ga4").url(ref, "referrer", vendor_changes)
    to_log = state.scrubber.to("log").url(ref, "referrer", log_changes)
    assert dict(out.fields).get("Referer", ref) == to_vendor and record.referrer == to_log
    assert (to_vendor == to_log) == same
    assert ((ref, "referrer") in (state.scrubbed_urls or {})) == same  # scrubbed once exactly when it may be
    referrer_changes = [(c.field, c.rule, c.after) for c in state.changes if c.scope == "referrer"]
    assert referrer_changes == [(c.field, c.rule, c.after) for c in vendor_changes + log_changes]
