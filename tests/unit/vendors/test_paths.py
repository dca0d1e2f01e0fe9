"""Which vendor a canonical path belongs to, and the spelling its beacon goes out in (privproxy.vendors)."""

from __future__ import annotations

import pytest

from privproxy import target, vendors
from privproxy.beacons import Settings

SETTINGS = Settings()


@pytest.mark.parametrize("raw, vendor, spelling", [
    ("/g/collect", "ga4", "/g/collect"),
    ("//g/collect", "ga4", "/g/collect"),
    ("/g/%63ollect", "ga4", "/g/collect"),
    ("/G/Collect", "ga4", "/g/collect"),
    ("/g/collect/", "ga4", "/g/collect"),
    ("/./g/collect", "ga4", "/g/collect"),
    ("/g/collect;x", "ga4", "/g/collect"),
    ("/matomo.ph%70", "matomo", "/matomo.php"),
    ("/stats/Matomo.PHP", "matomo", "/stats/matomo.php"),
    ("/stats/matomo.php/", "matomo", "/stats/matomo.php"),
    ("/t%72", "meta_pixel", "/tr"),
    ("/tr/", "meta_pixel", "/tr/"),  # a vendor's own spelling is kept
    ("/v1/%74", "segment", "/v1/t"),
    ("/e/", "posthog", "/e/"),
    ("/E", "posthog", "/e/"),
    ("/batch/", "posthog", "/batch/"),  # PostHog's spelling, not UA's /batch
    ("/batch", "universal_analytics", "/batch"),  # sniffed further by the body
    ("/B/SS/acmeprod/1/JS", "adobe", "/b/ss/acmeprod/1/JS"),
    ("/b/ss/", "adobe", "/b/ss/"),
    ("/products", None, None),
    ("/g/collectx", None, None),
    ("/tracker/order", None, None),
])
def test_canonical_paths_find_their_vendor(raw, vendor, spelling):
    got = SETTINGS.match(target.parse(raw).path)
    assert (got[0].name, got[1]) == (vendor, spelling) if vendor else got is None


def test_configured_paths_match_the_same_way():
    s = Settings(paths=(("/metrics/g/collect", "ga4"), ("*/tracker.php", "matomo"), ("/ingest/*", "posthog")))
    assert s.match(target.parse("//Metrics/G/collect/").path)[1] == "/metrics/g/collect"
    assert s.match(target.parse("/x/TRACKER.php").path) == (vendors.VENDORS["matomo"], "/x/tracker.php")
    assert s.match(target.parse("/ingest/e/").path) == (vendors.VENDORS["posthog"], "/ingest/e/")
    assert s.match(target.parse("/INGEST/e").path)[1] == "/ingest/e"


def test_a_vendor_switched_off_is_no_beacon():
    assert Settings(enabled=frozenset({"ga4"})).match("/track") is None
