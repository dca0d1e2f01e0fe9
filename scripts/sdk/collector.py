"""A stand-in vendor collector on 127.0.0.1 for scripts/record-sdk-beacons: records every request the SDKs
send, tagged with the SDK that sent it (record.mjs marks each run) and its installed version."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RECORDED: list[dict] = []
CURRENT = [""]
# Headers that change on every run or say nothing about the format.
VOLATILE = {"host", "connection", "content-length", "date", "keep-alive"}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():  # universal-analytics streams
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self) -> None:
        body = self.read_body()
        if self.path.startswith("/__mark"):
            CURRENT[0] = self.path.partition("sdk=")[2]
        else:
            RECORDED.append({"sdk": CURRENT[0], "method": self.command, "path": self.path,
                             "headers": {k.lower(): v for k, v in self.headers.items() if k.lower() not in VOLATILE},
                             "body": base64.b64encode(body).decode()})
        out = b'{"status":1,"code":200}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = handle_any


def main() -> int:
    work, out, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    packages, command = rest[: rest.index("--")], rest[rest.index("--") + 1:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rc = subprocess.run(command + [f"http://127.0.0.1:{server.server_address[1]}"], cwd=work, timeout=120).returncode
    server.shutdown()
    versions = {}
    for name in packages:
        meta = json.loads((Path(work) / "node_modules" / name / "package.json").read_text())
        versions[name] = meta["version"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"packages": versions, "requests": RECORDED}, indent=1) + "\n")
    print(f"recorded {len(RECORDED)} requests from {', '.join(f'{k} {v}' for k, v in versions.items())} -> {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
