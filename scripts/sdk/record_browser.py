"""Record the vendors' browser SDKs (npm packages, loaded from disk) in a real headless Chromium, against a
collector on 127.0.0.1: `python record_browser.py NODE_MODULES OUT.json`. Run by scripts/record-sdk-beacons."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

# SDK -> (bundle inside node_modules, the page script that drives it with the canaries, how it loads).
# "classic": a <script src> that defines a global; "module": an ES module imported as `sdk`. Every page is
# opened at a URL that carries a click id and an email, as landing pages do.
SDKS = {
    "posthog-js": ("posthog-js/dist/array.full.js", """
        posthog.init('phc_test_key', {api_host: location.origin, autocapture: false, capture_pageview: true,
                                      disable_session_recording: true, advanced_disable_decide: true,
                                      request_batching: false, opt_out_useragent_filter: true});
        posthog.identify('CANARYUID', {email: 'canary.person@example.com', name: 'Canary Person'});
        posthog.capture('purchase', {plan: 'gold', $email: 'canary.person@example.com', $ip: '203.0.113.77'});
    """, "classic"),
    "mixpanel-browser": ("mixpanel-browser/dist/mixpanel.umd.js", """
        mixpanel.init('mp_token', {api_host: location.origin, batch_requests: false, ip: false});
        mixpanel.identify('CANARYUID');
        mixpanel.people.set({$email: 'canary.person@example.com', $phone: '+81 90-1234-5678', plan: 'gold'});
        mixpanel.track('purchase', {plan: 'gold', email: 'canary.person@example.com'});
    """, "classic"),
    "@plausible-analytics/tracker": ("@plausible-analytics/tracker/plausible.js", """
        sdk.init({domain: 'shop.example', endpoint: location.origin + '/api/event', captureOnLocalhost: true,
                  autoCapturePageviews: true, logging: true, bindToWindow: false});
        sdk.track('purchase', {props: {plan: 'gold', email: 'canary.person@example.com'}, revenue: {amount: 12,
                  currency: 'EUR'}});
    """, "module"),
    "@amplitude/analytics-browser": ("@amplitude/analytics-browser/lib/scripts/amplitude-min.js", """
        amplitude.init('amp_key', 'CANARYUID', {serverUrl: location.origin + '/2/httpapi', flushQueueSize: 1,
                                                flushIntervalMillis: 200, logLevel: 0});
        const who = new amplitude.Identify();
        who.set('email', 'canary.person@example.com'); who.set('plan', 'gold');
        amplitude.identify(who);
        amplitude.track('purchase', {plan: 'gold', email: 'canary.person@example.com'});
    """, "classic"),
    "@snowplow/browser-tracker": ("@snowplow/browser-tracker/dist/index.umd.min.js", """
        const sp = snowplowBrowserTracking;
        sp.newTracker('sp1', location.origin, {appId: 'shop', eventMethod: 'post', encodeBase64: true,
                                               bufferSize: 1, stateStorageStrategy: 'cookieAndLocalStorage'});
        sp.setUserId('CANARYUID');
        sp.trackPageView({context: [{schema: 'iglu:com.example/user/jsonschema/1-0-0',
                                     data: {email: 'canary.person@example.com', plan: 'gold'}}]});
        sp.trackSelfDescribingEvent({event: {schema: 'iglu:com.example/purchase/jsonschema/1-0-0',
                                             data: {plan: 'gold', email: 'canary.person@example.com'}}});
    """, "classic"),
    # analytics.js 2.0 fetches its settings from the CDN (cdnURL: the recorder answers them, pointing the
    # Segment.io destination back at itself) and sends /v1/t, /v1/p, /v1/i.
    "@segment/analytics-next": ("@segment/analytics-next/dist/umd/index.js", """
        const analytics = AnalyticsNext.AnalyticsBrowser.load({writeKey: 'seg_key', cdnURL: location.origin});
        analytics.page();
        analytics.identify('CANARYUID', {email: 'canary.person@example.com', phone: '+81 90-1234-5678',
                                        plan: 'gold'});
        analytics.track('Order Completed', {plan: 'gold', email: 'canary.person@example.com'});
    """, "classic"),
    # The Experience Platform Web SDK always calls https://<edgeDomain>/<edgeBasePath>/...: the page routes
    # that origin to the recorder (no TLS needed), as a first-party CNAME would route it to privproxy.
    "@adobe/alloy": ("@adobe/alloy/dist/alloy.js", """
        alloy('configure', {datastreamId: 'ds-test', orgId: 'ABC123456@AdobeOrg', edgeDomain: 'edge.example',
                            edgeBasePath: 'ee', idMigrationEnabled: false, thirdPartyCookiesEnabled: false,
                            clickCollectionEnabled: false, defaultConsent: 'in'});
        alloy('sendEvent', {xdm: {eventType: 'commerce.purchases',
                                  identityMap: {Email: [{id: 'canary.person@example.com',
                                                         authenticatedState: 'authenticated'}],
                                                CRMID: [{id: 'CANARYUID', primary: true}]},
                                  web: {webPageDetails: {URL: location.href, name: 'purchase'}},
                                  commerce: {purchases: {value: 1}}},
                            data: {plan: 'gold', email: 'canary.person@example.com'}});
    """, "alloy"),
}
LANDING = "?email=canary.person%40example.com&gclid=CANARYGCLID&utm_source=news"
# Adobe's base code: queues calls until alloy.js has loaded.
ALLOY_STUB = ("!function(n,o){o.forEach(function(o){n[o]||((n.__alloyNS=n.__alloyNS||[]).push(o),n[o]=function()"
              "{var u=arguments;return new Promise(function(i,l){n[o].q.push([i,l,u])})},n[o].q=[])})}"
              "(window,['alloy']);")
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
      "CANARYUA")
RECORDED: list[dict] = []
CURRENT = [""]
VOLATILE = {"host", "connection", "content-length", "date", "keep-alive", "origin", "referer", "cookie",
            "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "accept-language", "accept-encoding"}


def keep(method: str, path: str, headers: dict[str, str], body: bytes) -> None:
    RECORDED.append({"sdk": CURRENT[0], "method": method, "path": path,
                     "headers": {k.lower(): v for k, v in headers.items() if k.lower() not in VOLATILE},
                     "body": base64.b64encode(body).decode()})


def edge(route) -> None:
    """The Adobe Edge Network, as far as the Web SDK needs it: record the call, answer an empty handle list."""
    req = route.request
    url = urlsplit(req.url)
    keep(req.method, url.path + (f"?{url.query}" if url.query else ""), req.headers, req.post_data_buffer or b"")
    route.fulfill(status=200, content_type="application/json",
                  headers={"access-control-allow-origin": req.headers.get("origin", "*"),
                           "access-control-allow-credentials": "true"},
                  body='{"requestId": "recorded", "handle": []}')


def main() -> int:
    modules, out = Path(sys.argv[1]), Path(sys.argv[2])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("record_browser: needs chromium (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/__sdk/"):
                name = unquote(self.path.partition("?")[0][len("/__sdk/"):])
                bundle, script, kind = SDKS[name]
                src = f"/__bundle/{quote(name, safe='')}"
                if kind == "module":
                    body = f'<script type="module">import * as sdk from "{src}"; {script}</script>'
                elif kind == "alloy":
                    body = f'<script>{ALLOY_STUB}</script><script src="{src}" async></script><script>{script}</script>'
                else:
                    body = f'<script src="{src}"></script><script>{script}</script>'
                return self.reply(200, f"<!doctype html><title>{name}</title>{body}".encode(), "text/html")
            if self.path.startswith("/v1/projects/"):  # Segment's settings: configuration, not a beacon
                host = self.headers.get("host", "")
                settings = {"integrations": {"Segment.io": {"apiKey": "seg_key", "apiHost": f"{host}/v1",
                                                            "protocol": "http"}}, "plan": {}, "edgeFunction": {}}
                return self.reply(200, json.dumps(settings).encode(), "application/json")
            if self.path.startswith("/analytics-next/bundles/"):  # analytics.js 2.0 loads parts of itself
                part = modules / "@segment/analytics-next/dist/umd" / Path(self.path).name
                return self.reply(200, part.read_bytes() if part.is_file() else b"", "text/javascript")
            if self.path.startswith("/__bundle/"):
                name = unquote(self.path[len("/__bundle/"):])
                return self.reply(200, (modules / SDKS[name][0]).read_bytes(), "text/javascript")
            self.record(b"")

        def do_POST(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            self.record(self.rfile.read(n) if n else b"")

        def record(self, body: bytes) -> None:
            if self.path.startswith("/favicon"):
                return self.reply(404, b"", "text/plain")
            keep(self.command, self.path, dict(self.headers.items()), body)
            self.reply(200, b'{"status":1,"code":200}', "application/json")  # Mixpanel, Amplitude: accepted

        def reply(self, status: int, payload: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            self.send_header("access-control-allow-origin", "*")
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    versions = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for name in SDKS:
                versions[name] = json.loads((modules / name / "package.json").read_text())["version"]
                CURRENT[0] = name
                # A headless user agent is dropped as a bot by some SDKs: present as the desktop browser it is.
                page = browser.new_context(user_agent=UA).new_page()
                page.route("https://edge.example/**", edge)
                page.on("console", lambda m, name=name: print(f"  {name} console: {m.text[:200]}", file=sys.stderr))
                page.on("pageerror", lambda e, name=name: print(f"  {name} error: {e}", file=sys.stderr))
                page.goto(f"{base}/__sdk/{quote(name, safe='')}{LANDING}", timeout=20000)
                time.sleep(3)  # SDKs batch and send on timers
                page.close()  # and flush on unload
                time.sleep(0.5)
        finally:
            browser.close()
    server.shutdown()
    out.write_text(json.dumps({"packages": versions, "requests": RECORDED}, indent=1) + "\n")
    print(f"recorded {len(RECORDED)} requests from {', '.join(f'{k} {v}' for k, v in versions.items())} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
