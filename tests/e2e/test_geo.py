"""Geography end to end: --geoip-db on the real proxy, before truncation; bad files at start and on reload."""

from __future__ import annotations

import time
import urllib.request

from tests.geodb import build
from tests.helpers import request, start_proxy, tls_context


def test_country_and_region_from_the_full_address(tmp_path, origin):
    db = build(tmp_path / "city.mmdb")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text("version: 1\ngeo:\n  small_cell: {k: 2}\n")
    p = start_proxy(tmp_path / "p", origin.url, "--geoip-db", str(db), "--log-format", "both", config=cfg,
                    metrics=True)
    ctx = tls_context(p.ca)
    try:
        for _ in range(3):
            request(p.port, "/p?email=jane%40example.com", tls=ctx)  # from 127.9.8.7: JP/13 in the test DB
        request(p.port, "/x", tls=ctx, source="127.7.1.2")  # DE/BE once: below k, logged as nothing
        records = p.log_records(wait_for=4)
        host, port = p.metrics
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    finally:
        p.stop()
    assert "country" not in records[0]  # the first visit from Japan is a cell of one
    assert records[1]["country"] == "JP" and records[1]["region"] == "13"
    assert records[2]["client"] == "127.9.8.0" and "city" not in records[2]
    assert "country" not in records[3] and records[3]["client"] == "127.7.1.0"
    assert 'privproxy_requests_by_country_total{country="JP"} 2.0' in text
    assert 'privproxy_geo_lookups_total{result="found"} 4.0' in text
    assert "127.9.8.7" not in text and "127.9.8.7" not in (p.log_dir / "access.log").read_text()


def test_missing_database_is_a_clear_error_at_start(tmp_path, origin):
    try:
        p = start_proxy(tmp_path / "p", origin.url, "--geoip-db", str(tmp_path / "GeoLite2-City.mmdb"))
    except RuntimeError as e:
        msg = str(e)
    else:
        p.stop()
        raise AssertionError("started without its GeoIP database")
    assert "GeoLite2-City.mmdb: GeoIP database not found" in msg and "geoipupdate" in msg
    assert "Traceback" not in msg


def test_reload_with_corrupt_database_keeps_serving_without_geo(tmp_path, origin):
    good = build(tmp_path / "city.mmdb")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(f"version: 1\ngeo:\n  database: {good}\n  small_cell: {{k: 1}}\n")
    p = start_proxy(tmp_path / "p", origin.url, config=cfg, metrics=True)
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/one", tls=ctx)
        bad = tmp_path / "bad.mmdb"
        bad.write_bytes(b"not a database" * 64)
        cfg.write_text(f"version: 1\ngeo:\n  database: {bad}\n  small_cell: {{k: 1}}\n")
        host, port = p.metrics
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
            if 'privproxy_geo_database_loads_total{result="failure"} 1.0' in text:
                break
            time.sleep(0.2)
        assert 'privproxy_geo_database_loads_total{result="failure"} 1.0' in text
        r = request(p.port, "/two", tls=ctx)
        assert r.status == 200
        records = p.log_records(wait_for=2)
    finally:
        p.stop()
    assert records[0]["country"] == "JP" and "country" not in records[1]
    assert "serving on without geography" in p.stderr()


def test_region_rules_follow_the_visitor_country(tmp_path, origin):
    # C14: a rule only for EU visitors; the country comes from the full address even when the log coarsens it
    db = build(tmp_path / "city.mmdb")
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(f"version: 1\ngeo: {{database: {db}}}\nrules:\n"
                   "  - {id: eu-campaign, action: drop, scopes: [query], names: [utm_campaign], regions: [EU]}\n")
    p = start_proxy(tmp_path / "p", origin.url, config=cfg)
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/p?utm_campaign=spring&q=1", tls=ctx, source="127.7.1.2")  # DE
        request(p.port, "/p?utm_campaign=spring&q=1", tls=ctx)  # JP
        records = p.log_records(wait_for=2)
    finally:
        p.stop()
    assert records[0]["path"] == "/p?q=1" and "country" not in records[0]  # k=5: too rare to log, still EU
    assert records[1]["path"] == "/p?utm_campaign=spring&q=1"
