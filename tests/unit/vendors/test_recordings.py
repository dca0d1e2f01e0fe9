"""Beacons recorded from the vendors' current SDKs (scripts/record-sdk-beacons: their npm packages pointed at a
local collector) replayed through the codecs: what real SDKs send decodes, loses every canary without
consent, keeps its reports' fields, and passes byte for byte with consent (issue 4)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from privproxy import beacon, vendors
from privproxy.vendors.base import Beacon, Limits
from tests.unit.vendors.beacons import CANARIES
from tests.unit.vendors.test_codecs import SCRUBBER, SETTINGS, all_text

RECORDINGS = sorted((Path(__file__).parent / "recordings").glob("*.json"))
REQUESTS = [(f"{path.stem}:{i}:{r['sdk']}", r) for path in RECORDINGS
            for i, r in enumerate(json.loads(path.read_text())["requests"])]
SECRETS = CANARIES + ("Canary Person",)


def as_beacon(r: dict) -> Beacon:
    path, _, query = r["path"].partition("?")
    h = r["headers"]
    return Beacon(r["method"], path, query, h.get("content-type", ""), h.get("content-encoding", ""),
                  base64.b64decode(r["body"]))


def codec_of(b: Beacon):
    codec = SETTINGS.codec_for(b.path)
    assert codec is not None, f"{b.path} is not a known collection path"
    return vendors.sniff(codec, b)


def test_recordings_cover_the_sdks():
    sdks = {r["sdk"] for _, r in REQUESTS}
    assert {"posthog-node", "mixpanel-node", "segment-analytics-node", "amplitude-analytics-node",
            "snowplow-node-tracker", "matomo-tracker", "posthog-js", "mixpanel-browser",
            "@plausible-analytics/tracker", "@adobe/alloy", "universal-analytics", "@amplitude/analytics-browser",
            "@snowplow/browser-tracker", "@segment/analytics-next"} <= sdks
    # posthog-node gzips its batches: the transport must stay covered by a real recording.
    assert any(r["headers"].get("content-encoding") == "gzip" for _, r in REQUESTS)


@pytest.mark.parametrize("name, r", REQUESTS, ids=[n for n, _ in REQUESTS])
def test_recorded_sdk_beacon_is_scrubbed_and_still_reports(name, r):
    b = as_beacon(r)
    sent = all_text(b.query) + " " + all_text(b.body)
    assert any(s in sent for s in SECRETS), "the recording should carry the canaries"
    codec = codec_of(b)
    result = beacon.process(codec, b, SCRUBBER, SETTINGS, False, [])
    assert result.forward, result.reason
    text = all_text(result.query) + " " + all_text(result.body)
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, leaked
    for marker in ("purchase", "Order Completed", "gold", "pv"):
        if marker in sent:
            assert marker in text, marker
    if r["headers"].get("content-encoding") == "gzip":
        assert result.body[:2] == b"\x1f\x8b"  # re-encoded in the SDK's own encoding
    # What goes on to the vendor is still the vendor's format: the same codec decodes it, with as many hits.
    again = Beacon(b.method, b.path, result.query, b.content_type, b.content_encoding, result.body)
    assert vendors.sniff(SETTINGS.codec_for(b.path), again).name == codec.name
    assert len(codec.decode(again, Limits()).docs) == len(codec.decode(b, Limits()).docs)


@pytest.mark.parametrize("name, r", REQUESTS, ids=[n for n, _ in REQUESTS])
def test_recorded_sdk_beacon_passes_as_sent_with_consent(name, r):
    b = as_beacon(r)
    result = beacon.process(codec_of(b), b, SCRUBBER, SETTINGS, True, [])
    assert result.forward and result.query == b.query and result.body == b.body
