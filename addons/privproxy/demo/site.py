"""The built-in sample site the demo puts behind the proxy: a few pages, cookies, and a page that shows what
the origin received (so a visitor can see their address arrive truncated)."""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Example Watch Co.</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
code,pre{{background:#f3f3f3;padding:.1rem .3rem}} pre{{padding:.6rem;overflow:auto}}</style></head>
<body><h1>{title}</h1>{body}
<hr><nav><a href="/">Home</a> · <a href="/products?q=watch&amp;page=2&amp;gclid=EAIaIQobChMI-demo">Products (with a click id)</a>
· <a href="/newsletter?email=jane.doe%40example.com&amp;tel=090-1234-5678">Newsletter (email in URL)</a>
· <a href="/health/consultation">Health consultation (sensitive page)</a>
· <a href="/whoami">What the origin saw</a></nav></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server_version = "ExampleOrigin/1.0"

    def log_message(self, format: str, *args: object) -> None:  # the demo's origin keeps no log of its own
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/whoami":
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
        elif path == "/healthz":
            self.send(200, b"ok\n", "text/plain")
        else:
            self.send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
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


def start(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-origin", daemon=True).start()
    return server
