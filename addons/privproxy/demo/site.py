"""The built-in sample site the demo puts behind the proxy: a few pages, cookies, and a page that shows what
the origin received (so a visitor can see their address arrive truncated); and a stand-in analytics vendor, to
which the proxy's analytics gateway sends the page's beacons (`beacons.forward`)."""

from __future__ import annotations

import base64
import html
import json
import os
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from privproxy import vendors
from privproxy.consent import token

DEMO_MEMBER = "demo-member-1"
CONSENT_COOKIE = "privproxy_consent"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Example Watch Co.</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
code,pre{{background:#f3f3f3;padding:.1rem .3rem}} pre{{padding:.6rem;overflow:auto}}</style></head>
<body><h1>{title}</h1>{body}
<hr><nav><a href="/">Home</a>
· <a href="/products?q=watch&amp;page=2&amp;gclid=EAIaIQobChMI-demo">Products (with a click id)</a>
· <a href="/newsletter?email=jane.doe%40example.com&amp;tel=090-1234-5678">Newsletter (email in URL)</a>
· <a href="/health/consultation">Health consultation (sensitive page)</a>
· <a href="/analytics?gclid=EAIaIQobChMI-demo">Analytics beacons</a>
· <a href="/collector">What the analytics vendor received</a>
· <a href="/whoami">What the origin saw</a>
· <a href="/member/login">Log in as a consenting member</a> / <a href="/member/logout">log out</a></nav></body></html>
"""


BEACONS_JS = Path(__file__).with_name("beacons.js").read_bytes()
# What the demo's stand-in "analytics vendor" received: the most recent beacons, for /collector and the tests.
RECEIVED: deque[dict] = deque(maxlen=200)


class Handler(BaseHTTPRequestHandler):
    server_version = "ExampleOrigin/1.0"
    role = "origin"  # who received a beacon: the site's origin, or the stand-in vendor (VendorHandler)

    def collect(self, body: bytes) -> bool:
        """Beacons to first-party collection paths land here, as a vendor's collector would get them."""
        if vendors.codec_for_path(self.path.split("?", 1)[0]) is None:
            return False
        RECEIVED.append({"at": self.role, "method": self.command, "path": self.path,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": base64.b64encode(body).decode()})
        self.send(204, b"", "text/plain")
        return True

    def log_message(self, format: str, *args: object) -> None:  # the demo's origin keeps no log of its own
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if self.collect(b""):
            return
        if path == "/static/beacons.js":
            self.send(200, BEACONS_JS, "text/javascript")
        elif path == "/analytics":
            self.page("Analytics beacons", "<p>This page fires a beacon of every analytics vendor privproxy knows to "
                      "this site's own collection paths, carrying a member id, an email and an IP override. "
                      "See <a href=\"/collector\">what the vendor received</a>.</p><p id=\"beacons\">sending...</p>"
                      "<script src=\"/static/beacons.js\"></script>",
                      cookies=["_ga=GA1.1.1234567890.1700000000; Path=/; Max-Age=63072000"])
        elif path == "/collector":
            rows = "".join(f"<h3>{html.escape(r['method'])} {html.escape(r['path'][:300])} (at the {r['at']})</h3><pre>"
                           f"{html.escape(base64.b64decode(r['body'])[:2000].decode('utf-8', 'replace'))}</pre>"
                           for r in reversed(RECEIVED))
            self.page("What the analytics vendor received", "<p>Beacons as they left privproxy: ids pseudonymized, "
                      "emails and click ids gone, addresses truncated (gzip bodies shown compressed). With the "
                      "analytics gateway on (<code>beacons.forward</code>, as <code>privproxy demo</code> sets it) "
                      "they went straight to the stand-in vendor, never to this origin.</p>" +
                      (rows or "<p>nothing yet: open <a href=\"/analytics\">the analytics page</a></p>"))
        elif path == "/api/received":
            self.send(200, json.dumps(list(RECEIVED)).encode(), "application/json")
        elif path == "/whoami":
            seen = {k: v for k, v in self.headers.items()
                    if k.lower() in ("host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                                     "x-request-id", "x-real-ip", "forwarded")}
            seen["peer (the proxy)"] = self.client_address[0]
            body = ("<p>The origin server received these headers. The address is truncated: the origin "
                    "never learns who you are.</p><pre>" + html.escape(json.dumps(seen, indent=2)) + "</pre>")
            self.page("What the origin saw", body)
        elif path == "/api/echo":
            payload = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
            self.send(200, payload, "application/json")
        elif path in ("/", "/products", "/newsletter") or path.startswith("/health"):
            titles = {"/": "Welcome", "/products": "Products", "/newsletter": "Newsletter"}
            body = ("<p>This page is served by the demo origin through privproxy. Open the access log to see "
                    "what was recorded: the address truncated, click ids and emails removed, the sensitive "
                    "page generalized.</p>")
            self.page(titles.get(path, "Health consultation"), body,
                      cookies=["_ga=GA1.1.123456789.1700000000; Path=/; Max-Age=63072000",
                               "session=demo-session-42; Path=/; HttpOnly"])
        elif path == "/member/login":
            # Stands in for the member system: the member logs in and agrees to be linked (docs/consent-token.md).
            key = os.environ.get("PRIVPROXY_CONSENT_KEY", "")
            if len(key) < 32:
                self.page("Member login", "<p>Set PRIVPROXY_CONSENT_KEY (32+ characters) to sign consent tokens.</p>")
                return
            value = token.mint(DEMO_MEMBER, token.SCOPES, int(time.time()), 3600, "k1", key.encode())
            self.page("Logged in as a consenting member",
                      f"<p>You are <code>{DEMO_MEMBER}</code> and consented to linkage for one hour. Open "
                      "<a href=\"/analytics\">the analytics page</a> again: the vendor now gets your ids as sent, "
                      "and your requests also go to <code>linked.jsonl</code> in the log directory. A "
                      "<code>Sec-GPC: 1</code> header from your browser still overrides this.</p>",
                      cookies=[f"{CONSENT_COOKIE}={value}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"])
        elif path == "/member/logout":
            self.page("Logged out", "<p>Consent cookie removed: you are anonymous again.</p>",
                      cookies=[f"{CONSENT_COOKIE}=; Path=/; Max-Age=0"])
        elif path == "/healthz":
            self.send(200, b"ok\n", "text/plain")
        else:
            self.send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.collect(body):
            return
        self.send(200, json.dumps({"received": len(body)}).encode(), "application/json")

    def page(self, title: str, body: str, cookies: list[str] | None = None) -> None:
        self.send(200, PAGE.format(title=html.escape(title), body=body).encode(), "text/html; charset=utf-8", cookies)

    def send(self, status: int, payload: bytes, ctype: str, cookies: list[str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for c in cookies or []:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        self.wfile.write(payload)


class VendorHandler(Handler):
    """The stand-in vendor's collector: beacons only, recorded in RECEIVED (which the origin's /collector shows)."""

    server_version = "DemoVendor/1.0"
    role = "vendor"

    def do_GET(self) -> None:
        if not self.collect(b""):
            self.send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if not self.collect(self.rfile.read(length) if length else b""):
            self.send(404, b"not found\n", "text/plain")


def start_vendor(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The stand-in analytics vendor, plain HTTP on loopback (`allow_http: true` in beacons.forward)."""
    server = ThreadingHTTPServer((host, port), VendorHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-vendor", daemon=True).start()
    return server


def gateway_config(text: str, vendor_url: str) -> str:
    """filters.yaml `text` with every vendor's beacons sent to `vendor_url` by the analytics gateway, unless it
    configures `beacons.forward` itself."""
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: the file's comments and order stay
    data = yaml.load(text)
    section = data.setdefault("beacons", {})
    if section is None:
        section = data["beacons"] = {}
    if "forward" not in section:
        section["forward"] = {name: {"url": vendor_url, "allow_http": True} for name in vendors.VENDORS}
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def start(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-origin", daemon=True).start()
    return server
