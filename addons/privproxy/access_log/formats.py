"""Access-log line formats: JSON lines (schema v1, orjson), the Combined Log Format and Apache's vhost_combined (C3)."""

from __future__ import annotations

import time

import orjson

from privproxy.access_log.record import SCHEMA_VERSION, LogRecord


_last_second: tuple[int, str] = (-1, "")  # replaced whole: a thread reads the old pair or the new one


def iso(ts: float) -> str:
    # Records come many to the second: its text is made once (strftime was 2 % of a beacon's CPU).
    global _last_second
    second = int(ts)
    last = _last_second
    if last[0] != second or ts < 0:  # before 1970 int() and gmtime() round apart: not kept
        last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)))
        if ts >= 0:
            _last_second = last
    return f"{last[1]}.{int(ts * 1000) % 1000:03d}Z"


# Line separators that JSON leaves raw but line readers split on (Python's splitlines, JavaScript, many log
# shippers): written as JSON escapes, so one record is always one line. orjson already escapes U+0000-U+001F.
_SEPARATORS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def one_line(data: bytes) -> bytes:
    if b"\xc2\x85" in data or b"\xe2\x80" in data:
        for raw, escaped in _SEPARATORS:
            data = data.replace(raw, escaped)
    return data + b"\n"


def json_line(r: LogRecord) -> bytes:
    return one_line(orjson.dumps(json_doc(r)))


def linked_line(r: LogRecord, member: str, key_id: str) -> bytes:
    """A linked-log record: the anonymous record's fields plus the member it belongs to (consent scope `logs`)."""
    return one_line(orjson.dumps({"member": member, "consent_key": key_id, **json_doc(r)}))


def text(value: str) -> str:
    """A field for a log record: bytes that are not UTF-8 (kept by mitmproxy as surrogate escapes) written as
    `%XX`, so every record encodes (JSON refuses lone surrogates) and nothing is lost; other lone surrogates
    as U+FFFD."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    return "".join(f"%{ord(ch) - 0xDC00:02X}" if "\udc80" <= ch <= "\udcff" else
                   "\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)


def json_doc(r: LogRecord) -> dict[str, object]:
    doc: dict[str, object] = {
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
    if r.bot:
        doc["bot"] = True
    if r.instance:
        doc["instance"] = r.instance
    if r.vendor:  # the gateway sent it to the vendor: the answer is the vendor's unless privproxy's own 502/504
        doc["vendor"] = r.vendor
        doc["source"] = "vendor" if r.outcome == "forwarded" else "proxy"
    if r.country:
        doc["country"] = r.country
        if r.region:
            doc["region"] = r.region
            if r.city:
                doc["city"] = r.city
    return doc


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clf_time(ts: float) -> str:
    t = time.gmtime(ts)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def quoted(value: str) -> str:
    """A field inside "...": quotes, backslashes, C0 and C1 controls escaped as nginx does (\\xHH), and the
    Unicode line separators too (\\uHHHH), so a record is always one line to every reader."""
    if not value:
        return "-"
    out = []
    for ch in value:
        o = ord(ch)
        if ch == '"' or ch == "\\" or o < 0x20 or 0x7F <= o <= 0x9F:
            out.append(f"\\x{o:02X}")
        elif o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF:  # line separators; lone surrogates
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    return "".join(out)


def combined_line(r: LogRecord) -> bytes:
    """Combined Log Format with the truncated address as host; GoAccess and AWStats read it as it is."""
    size = str(r.bytes) if r.bytes else "-"
    request = f"{r.method} {r.path} {r.proto}"
    return (f'{r.client} - - [{clf_time(r.ts)}] "{quoted(request)}" {r.status} {size} '
            f'"{quoted(r.referrer)}" "{quoted(r.user_agent)}"\n').encode("utf-8", "backslashreplace")


def vhost(r: LogRecord) -> str:
    """Apache's `%v:%p`: the virtual host the record names (the Host as the proxy logs it: a name, or a truncated
    address) and its port, the scheme's default when the Host names none; `-` when the proxy logged no Host."""
    if r.host in ("", "-"):
        return "-"
    name, port = r.host, "443" if r.scheme == "https" else "80"
    head, sep, given = name.rpartition(":")
    if sep and given.isdigit() and (head.endswith("]") or ":" not in head):  # `name:port`, `[v6]:port`
        return name
    return f"{name}:{port}"


def vhost_combined_line(r: LogRecord) -> bytes:
    """Apache's vhost_combined, `%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"`: the Combined line
    after the virtual host, so GoAccess (`--log-format=VCOMBINED`) splits the statistics per site."""
    return f"{vhost(r)} ".encode("utf-8", "backslashreplace") + combined_line(r)


# format name -> (file name, line encoder). vhost_combined takes Combined's file name: one text log per directory,
# in the layout the operator chose.
FORMATS = {"json": ("access.jsonl", json_line), "combined": ("access.log", combined_line),
           "vhost_combined": ("access.log", vhost_combined_line)}
LINKED_FILE = "linked.jsonl"
FORMAT_CHOICES = ("json", "combined", "vhost_combined", "both")


def selected(choice: str) -> tuple[str, ...]:
    return ("json", "combined") if choice == "both" else (choice,)
