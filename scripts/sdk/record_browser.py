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

# SDK -> (bundle inside node_modules, the page script that drives it with the canaries)
SDKS = {
    "posthog-js": ("posthog-js/dist/array.full.js", """
        posthog.init('phc_test_key', {api_host: location.origin, autocapture: false, capture_pageview: true,
                                      disable_session_recording: true, advanced_disable_decide: true,
                                      request_batching: false, opt_out_useragent_filter: true});
        posthog.identify('CANARYUID', {email: 'canary.person@example.com', name: 'Canary Person'});
        posthog.capture('purchase', {plan: 'gold', $email: 'canary.person@example.com', $ip: '203.0.113.77'});
    """),
    "mixpanel-browser": ("mixpanel-browser/dist/mixpanel.umd.js", """
        mixpanel.init('mp_token', {api_host: location.origin, batch_requests: false, ip: false});
        mixpanel.identify('CANARYUID');
        mixpanel.people.set({$email: 'canary.person@example.com', $phone: '+81 90-1234-5678', plan: 'gold'});
        mixpanel.track('purchase', {plan: 'gold', email: 'canary.person@example.com'});
    """),
}
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
      "CANARYUA")
RECORDED: list[dict] = []
CURRENT = [""]
VOLATILE = {"host", "connection", "content-length", "date", "keep-alive", "origin", "referer", "cookie",
            "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "accept-language", "accept-encoding"}


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
                name = self.path.split("/")[2]
                bundle, script = SDKS[name]
                page = (f"<!doctype html><title>{name}</title><script src=\"/__bundle/{name}\"></script>"
                        f"<script>{script}</script>").encode()
                return self.reply(200, page, "text/html")
            if self.path.startswith("/__bundle/"):
                name = self.path.split("/")[2]
                return self.reply(200, (modules / SDKS[name][0]).read_bytes(), "text/javascript")
            self.record(b"")

        def do_POST(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            self.record(self.rfile.read(n) if n else b"")

        def record(self, body: bytes) -> None:
            if self.path.startswith("/favicon"):
                return self.reply(404, b"", "text/plain")
            RECORDED.append({"sdk": CURRENT[0], "method": self.command, "path": self.path,
                             "headers": {k.lower(): v for k, v in self.headers.items() if k.lower() not in VOLATILE},
                             "body": base64.b64encode(body).decode()})
            self.reply(200, b'{"status":1}', "application/json")

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
                page.on("console", lambda m: print(f"  {name} console: {m.text[:200]}", file=sys.stderr))
                page.on("pageerror", lambda e: print(f"  {name} error: {e}", file=sys.stderr))
                page.goto(f"{base}/__sdk/{name}", timeout=20000)
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
