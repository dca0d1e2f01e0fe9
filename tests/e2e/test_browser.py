"""A real headless Chromium on the demo site behind the real proxy: every vendor's beacon, fired by the page's
own script, reaches the collector without the member id, the email, the click id or the full address (C4, C6)."""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
import urllib.request

import pytest

from privproxy.demo import site
from tests.helpers import REPO, start_proxy
from tests.tools import require
from tests.unit.vendors.test_codecs import all_text

SECRETS = ("member-4711", "jane.doe", "EAIaIQobChMI-demo", "203.0.113.77", "1234567890.1700000000",
           "anon-5f1c-4711", "dev-5f1c-4711", "5f1c5f1c5f1c4711", "d5f1c4711", "5647382910")


def send_beacons(page, url: str) -> None:
    """Open the demo page at `url` and wait until its script has sent its beacons."""
    page.goto(url, timeout=20000)
    page.wait_for_function("document.title.startsWith('beacons sent')", timeout=20000)


def load_demo_page(sync_api, chromium: str, url: str) -> str:
    """`send_beacons` in a fresh headless Chromium (the proxy's certificate not checked); the page's title."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            send_beacons(page, url)
            return page.title()
        finally:
            browser.close()


def beacon_text(r: dict) -> str:
    """All a received beacon carries, as text: its path, its body (gunzipped, decoded) and its headers."""
    body = base64.b64decode(r["body"])
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return all_text(r["path"]) + " " + all_text(body) + " " + json.dumps(r["headers"])


def wait_received(count: int = 11) -> list[dict]:
    """What the demo site has received, once `count` beacons have arrived (or after 10 seconds)."""
    deadline = time.monotonic() + 10
    while len(site.RECEIVED) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return list(site.RECEIVED)


def test_demo_page_beacons_scrubbed_in_a_real_browser(tmp_path):
    chromium = require("chromium", "chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (a test extra)")
    site.RECEIVED.clear()
    origin = site.start()
    origin_url = f"http://127.0.0.1:{origin.server_address[1]}"
    p = start_proxy(tmp_path / "p", origin_url)
    try:
        title = load_demo_page(sync_api, chromium, f"https://localhost:{p.port}/analytics?gclid=EAIaIQobChMI-demo")
        deadline = time.monotonic() + 10
        received = []
        while time.monotonic() < deadline:
            received = json.loads(urllib.request.urlopen(origin_url + "/api/received", timeout=5).read())
            if len(received) >= 11:
                break
            time.sleep(0.1)
    finally:
        p.stop()
        origin.shutdown()
    assert title == "beacons sent: 11", title  # every fetch() answered
    paths = {r["path"].split("?")[0] for r in received}
    assert {"/g/collect", "/v1/t", "/track/", "/com.snowplowanalytics.snowplow/tp2", "/matomo.php", "/2/httpapi",
            "/e/", "/tr", "/b/ss/demo/1/JS-2.22.0/s12345", "/api/event"} <= paths
    for r in received:
        text = beacon_text(r)
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, (r["path"][:80], leaked)
    ga = next(r for r in received if r["path"].startswith("/g/collect?") and r["method"] == "GET")
    assert "en=page_view" in ga["path"] and "ep.plan=gold_plan" in ga["path"]  # the reports still work
    # The page's Set-Cookie _ga never reached the browser (tracking cookies are not set without consent).
    assert "_ga=" not in ga["headers"].get("cookie", "")
    # generalized to family, major version and OS family; headless Chrome is an automated agent, logged as a bot
    assert "sec-ch-ua-model" not in ga["headers"]
    assert re.fullmatch(r"(Headless)?Chrome \d+ \((Linux|bot)\)", ga["headers"]["user-agent"]), ga["headers"]


def test_consenting_member_in_a_real_browser(tmp_path, monkeypatch):
    """The demo site plays the member system: after /member/login the same page's beacons reach the vendor as
    sent and the member's requests go to linked.jsonl; with Sec-GPC they are scrubbed again."""
    chromium = require("chromium", "chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (a test extra)")
    monkeypatch.setenv("PRIVPROXY_CONSENT_KEY", "browser-test-consent-key-0123456789abcdef")
    site.RECEIVED.clear()
    origin = site.start()
    origin_url = f"http://127.0.0.1:{origin.server_address[1]}"
    p = start_proxy(tmp_path / "p", origin_url)

    def beacons(context) -> list[dict]:
        site.RECEIVED.clear()
        page = context.new_page()
        send_beacons(page, f"https://localhost:{p.port}/analytics")
        page.close()
        return wait_received()

    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                member = browser.new_context(ignore_https_errors=True)
                login = member.new_page()
                login.goto(f"https://localhost:{p.port}/member/login", timeout=20000)
                assert "consenting member" in login.title()
                login.close()
                consented = beacons(member)
                gpc = browser.new_context(ignore_https_errors=True, extra_http_headers={"Sec-GPC": "1"})
                gpc.add_cookies(member.cookies())
                overridden = beacons(gpc)
            finally:
                browser.close()
        linked = (p.log_dir / "linked.jsonl")
        deadline = time.monotonic() + 5
        while not linked.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        p.stop()
        origin.shutdown()
    ga = next(r for r in consented if r["path"].startswith("/g/collect?") and r["method"] == "GET")
    assert "member-4711" in ga["path"] and "1234567890.1700000000" in ga["path"]  # as the page sent them
    assert len(consented) == 11 and len(overridden) == 11
    for r in overridden:
        text = beacon_text(r)
        assert "member-4711" not in text and "jane.doe" not in text, r["path"][:80]
    records = [json.loads(x) for x in linked.read_text().splitlines()]
    assert records and {r["member"] for r in records} == {site.DEMO_MEMBER}
    assert site.DEMO_MEMBER not in (p.log_dir / "access.jsonl").read_text()


def test_demo_beacons_go_through_the_gateway_to_the_vendor(tmp_path):
    """As `privproxy demo` runs it: every vendor in beacons.forward, toward the demo's stand-in vendor. The page's
    eleven beacons reach the vendor scrubbed, with the truncated address, and none reaches the origin."""
    chromium = require("chromium", "chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (a test extra)")
    site.RECEIVED.clear()
    origin, vendor = site.start(), site.start_vendor()
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(site.gateway_config((REPO / "filters.yaml").read_text(),
                                       f"http://127.0.0.1:{vendor.server_address[1]}"))
    p = start_proxy(tmp_path / "p", f"http://127.0.0.1:{origin.server_address[1]}", config=cfg)
    try:
        title = load_demo_page(sync_api, chromium, f"https://localhost:{p.port}/analytics?gclid=EAIaIQobChMI-demo")
        received = wait_received()
        records = p.log_records(wait_for=13)
    finally:
        p.stop()
        origin.shutdown()
        vendor.shutdown()
    assert title == "beacons sent: 11", title
    assert len(received) == 11 and {r["at"] for r in received} == {"vendor"}  # nothing at the origin
    for r in received:
        text = beacon_text(r)
        assert not [s for s in SECRETS if s in text], r["path"][:80]
        assert r["headers"]["x-forwarded-for"] == "127.0.0.0" and r["headers"]["host"].startswith("127.0.0.1:")
    beacon_records = [r for r in records if r.get("vendor")]
    assert len(beacon_records) == 11 and {r["source"] for r in beacon_records} == {"vendor"}
