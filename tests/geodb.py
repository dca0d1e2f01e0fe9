"""Small MaxMind DB files with known answers, built by the tests themselves (mmdb-writer)."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

CITY = {
    "127.9.8.0/24": {"country": {"iso_code": "JP", "names": {"en": "Japan"}},
                     "subdivisions": [{"iso_code": "13", "names": {"en": "Tokyo"}}],
                     "city": {"names": {"en": "Chiyoda"}}},
    "127.7.0.0/16": {"country": {"iso_code": "DE", "names": {"en": "Germany"}},
                     "subdivisions": [{"iso_code": "BE", "names": {"en": "Berlin"}}]},
    "2001:db8:1::/48": {"country": {"iso_code": "FR"}},
}
# DB-IP lite City files name subdivisions without ISO codes.
DBIP = {"127.9.8.0/24": {"country": {"iso_code": "JP"}, "subdivisions": [{"names": {"en": "Tokyo"}}],
                         "city": {"names": {"en": "Chiyoda"}}}}


def build(path: Path, records: dict[str, dict] = CITY, database_type: str = "GeoLite2-City") -> Path:
    w = MMDBWriter(ip_version=6, database_type=database_type, ipv4_compatible=True)
    for net, rec in records.items():
        w.insert_network(IPSet([net]), rec)
    w.to_db_file(str(path))
    return path
