"""Coarse geography before truncation, and the small-cell guard (issue 6, item 2; C9, C14)."""

from __future__ import annotations

import pytest

from privproxy import geo
from privproxy.errors import ConfigError
from tests.geodb import DBIP, build


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return str(build(tmp_path_factory.mktemp("geo") / "city.mmdb"))


def test_lookup_by_granularity(city):
    assert geo.GeoDB(city, "country").lookup("127.9.8.7") == geo.Place("JP")
    assert geo.GeoDB(city).lookup("127.9.8.7") == geo.Place("JP", "13")
    assert geo.GeoDB(city, "city").lookup("127.9.8.7") == geo.Place("JP", "13", "Chiyoda")
    assert geo.GeoDB(city).lookup("2001:db8:1:2::3") == geo.Place("FR")
    assert geo.GeoDB(city).lookup("::ffff:127.9.8.7") == geo.Place("JP", "13")
    assert geo.GeoDB(city).lookup("192.0.2.1") is None


def test_dbip_lite_subdivision_names(tmp_path):
    db = geo.GeoDB(str(build(tmp_path / "dbip.mmdb", DBIP, "DBIP-City-Lite")), "subdivision")
    assert db.lookup("127.9.8.1") == geo.Place("JP", "Tokyo")


def test_missing_and_corrupt_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="GeoIP database not found") as e:
        geo.GeoDB(str(tmp_path / "nope.mmdb"))
    assert "geoipupdate" in str(e.value)
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"this is not a maxmind database" * 100)
    with pytest.raises(ConfigError, match="not a MaxMind DB file"):
        geo.GeoDB(str(bad))


def test_small_cell_guard_coarsens_rare_places():
    clock = Clock()
    g = geo.SmallCellGuard(k=3, window_seconds=60, clock=clock)
    tokyo, osaka = geo.Place("JP", "13"), geo.Place("JP", "27")
    assert g.apply(tokyo) == geo.Place()  # one visit from Japan at all: nothing
    assert g.apply(osaka) == geo.Place()
    assert g.apply(tokyo) == geo.Place("JP")  # Japan seen 3 times, Tokyo twice
    assert g.apply(tokyo) == geo.Place("JP", "13")
    assert g.apply(osaka) == geo.Place("JP")
    clock.t = 61  # a new window forgets
    assert g.apply(tokyo) == geo.Place()
    assert geo.SmallCellGuard(k=1, window_seconds=60).apply(tokyo) == tokyo


def test_locator_never_raises(city):
    loc = geo.Locator(geo.Settings(database=city, small_cell_k=1), geo.GeoDB(city))
    assert loc.locate("127.9.8.7") == geo.Located(geo.Place("JP", "13"), "found", "JP")
    assert loc.locate("192.0.2.1") == geo.Located(geo.Place(), "not_found")
    assert loc.locate("not an address").result == "error"
    assert geo.Locator(geo.Settings(), None).locate("127.9.8.7") == geo.Located(geo.Place(), "disabled")
    guarded = geo.Locator(geo.Settings(database=city, small_cell_k=5), geo.GeoDB(city)).locate("127.9.8.7")
    assert guarded.place == geo.Place() and guarded.country == "JP"  # rare for the log, still JP for the rules


def test_region_groups():
    assert geo.expand(("EU",)) >= {"DE", "FR"} and "NO" not in geo.expand(("EU",))
    assert geo.expand(("EEA", "JP")) >= {"NO", "DE", "JP"}
