"""Access-log line formats: JSON lines (schema v1, orjson) and the Combined Log Format (C3)."""

from __future__ import annotations

import time

import orjson

from privproxy.access_log.record import SCHEMA_VERSION, LogRecord


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def json_line(r: LogRecord) -> bytes:
    doc = {
        "v": SCHEMA_VERSION,
        "ts": iso(r.ts),
        "request_id": r.request_id,
        "site": r.site,
        "client": r.client,
        "method": r.method,
        "scheme": r.scheme,
        "host": r.host,
        "path": r.path,
        "proto": r.proto,
        "status": r.status,
        "bytes": r.bytes,
        "duration_ms": r.duration_ms,
        "outcome": r.outcome,
        "tls": r.tls,
        "user_agent": r.user_agent,
        "referrer": r.referrer,
    }
    return orjson.dumps(doc) + b"\n"
