"""Leak guard: canary identifiers in every position the product knows, for every vendor, through the real addon
chain (one privproxy composite under mitmproxy's taddons, shipped rules, a log directory, metrics). None may
reach a forwarded beacon (no consent), the access log, or the metrics exposition (C2, C4, C6, C8, C15;
001 §9.2.1, §7.3; 000 §3; 004 definition of personal information).

CI runs a bounded search; PRIVPROXY_LEAK_EXAMPLES=5000 runs a longer one on demand.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import inspect
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client import generate_latest

import privproxy.mitm
from privproxy.mitm import internals
from privproxy.mitm.shared import SharedState
from tests.helpers import REPO
from tests.unit.vendors.beacons import CANARIES as VENDOR_CANARIES
from tests.unit.vendors.beacons import CASES
from tests.unit.vendors.test_codecs import all_text

N = int(os.environ.get("PRIVPROXY_LEAK_EXAMPLES", "150"))

# Identifier names the shipped rules know (query and cookies), and the tracking cookies SDKs set.
ID_PARAMS = ("uid", "user_id", "cid", "client_id", "member_id", "anonymous_id", "distinct_id", "gclid", "fbclid",
             "msclkid", "ttclid", "token", "session_id", "email", "tel", "name")
TRACKING_COOKIES = ("_ga", "_ga_ABC123", "_gid", "_fbp", "_fbc", "ajs_user_id", "ajs_anonymous_id", "mp_x_mixpanel",
                    "amp_abcdef", "_pk_id.1.abcd", "sp", "_sp_id.1fff", "ph_phc_x_posthog", "s_ecid", "_gcl_aw")
FREE_NAMES = ("q", "ref", "note", "x", "dl", "u", "data", "props", "c1")

tokens = st.text(alphabet="abcdefghjkmnpqrstuvwxyz23456789", min_size=6, max_size=10)

# --- the classes of issue 17: each a way a receiver reads a request differently from a naive proxy ------------


@st.composite
def respelled(draw, path: str) -> str:
    """Another spelling of `path` that nginx (or a Java container, or a case-insensitive route) sends to the same
    place: doubled slashes, percent-encoded letters, dot segments, a trailing slash, `;params`, `\\`, case."""
    segments = path.split("/")[1:]
    out = []
    for seg in segments:
        chars = []
        for ch in seg:
            op = draw(st.sampled_from(["keep"] * 4 + ["pct", "PCT", "case"]))
            chars.append(f"%{ord(ch):02x}" if op == "pct" and ch.isalnum() else
                         f"%{ord(ch):02X}" if op == "PCT" and ch.isalnum() else ch.swapcase() if op == "case" else ch)
        seg = "".join(chars)
        prefix = draw(st.sampled_from(["/", "/", "//", "/./", "/zz/../", "\\", "/%2e/"]))
        out.append(prefix + seg)
    tail = draw(st.sampled_from(["", "", "/", ";jsessionid=x", "/."]))
    return "".join(out) + tail


def gzip_members(body: bytes, cuts: list[int]) -> bytes:
    """The body as several gzip members (RFC 1952 allows it; every receiver inflates them all)."""
    points = sorted({min(max(c, 0), len(body)) for c in cuts} | {0, len(body)})
    return b"".join(gzip.compress(body[a:b]) for a, b in zip(points, points[1:], strict=False)) or gzip.compress(b"")


def multipart(body: bytes) -> tuple[bytes, str]:
    boundary = "privproxyLEAKguard"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             for k, _, v in (p.partition("=") for p in body.decode("utf-8", "replace").split("&"))]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


ID_KEYS = ("userId", "anonymousId", "distinct_id", "user_id", "device_id", "client_id", "uid", "cid")
PHP_SPELLINGS = ("%20{}", "+{}", "{}%00x", "{}[]", "{}[0]", "{}[a]", "dot")  # what PHP reads as {}
ADDRESS_HEADERS = ("CloudFront-Viewer-Address", "X-Azure-SocketIP", "Fly-Client-IP", "CF-Connecting-IPv6",
                   "X-Originating-IP", "DO-Connecting-IP", "True-Client-IP", "X-Client-Public-IP")
SEPARATORS = ("\u2028", "\u2029", "\x85")


def embedded(v4: str, form: str) -> str:
    """An IPv6 address that carries `v4` (6to4, NAT64, mapped, Teredo)."""
    import ipaddress

    n = int(ipaddress.IPv4Address(v4))
    if form == "6to4":
        return str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1))
    if form == "nat64":
        return str(ipaddress.IPv6Address((0x64FF9B << 96) | n))
    if form == "teredo":
        return str(ipaddress.IPv6Address((0x20010000 << 96) | (0xC0000201 << 64) | (n ^ 0xFFFFFFFF)))
    return f"::ffff:{v4}"


@st.composite
def canary(draw, kind: str | None = None):
    """(value as sent, the part that must never come out)."""
    k = kind or draw(st.sampled_from(["email", "phone", "ip", "jwt", "card", *HELD_OUT]))
    t = draw(tokens)
    if k in HELD_OUT:
        return draw(HELD_OUT[k](t))
    if k == "email":
        v = f"cnry.{t}@example.com"
        return v, f"cnry.{t}"
    if k == "phone":
        n = draw(st.integers(1000, 9999))
        return f"+81 90-{n}-{n + 1 if n < 9999 else 1000}", f"90-{n}-"
    if k == "ip":
        ip = f"198.51.{draw(st.integers(0, 255))}.{draw(st.integers(1, 254))}"
        return ip, ip
    if k == "jwt":
        head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        body = base64.urlsafe_b64encode(json.dumps({"sub": f"cnry{t}"}).encode()).decode().rstrip("=")
        v = f"{head}.{body}.c2lnbmF0dXJlc2lnbmF0dXJl"
        return v, body
    return "4111 1111 1111 1111", "4111 1111 1111 1111"


# --- issue 21: identifiers in spellings the detectors were not written from (phonenumbers, python-stdnum) --------
_FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "0123456789@.abcdefghijklmnopqrstuvwxyz"})


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body + "0")):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _grouped(draw, digits: str, sizes: tuple[int, ...]) -> str:
    sep = draw(st.sampled_from([" ", "-", "", "."])) if len(sizes) > 1 else ""
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    return sep.join(out)


@st.composite
def us_phone(draw, t: str):
    area, exch, line = draw(st.integers(201, 989)), draw(st.integers(200, 999)), draw(st.integers(0, 9999))
    digits = f"{area}{exch}{line:04d}"
    form = draw(st.sampled_from(["{a}-{e}-{l}", "({a}) {e}-{l}", "{a}.{e}.{l}", "{a} {e} {l}", "+1 {a} {e} {l}",
                                 "+1-{a}-{e}-{l}", "fw"]))
    if form == "fw":
        v = f"{digits[:3]}-{digits[3:6]}-{digits[6:]}".translate(_FULLWIDTH)
    else:
        v = form.format(a=digits[:3], e=digits[3:6], l=digits[6:])
    return v, v.lstrip("+1 -(")[-8:]


@st.composite
def jp_phone(draw, t: str):
    n = f"{draw(st.sampled_from(['90', '80', '70']))}{draw(st.integers(10000000, 99999999))}"
    form = draw(st.sampled_from(["0{a}-{b}-{c}", "0{a} {b} {c}", "0{a}.{b}.{c}", "+81 {a} {b} {c}", "0{a}{b}{c}",
                                 "81 {a} {b} {c}", "fw"]))  # `81 ...`: a `+` sent raw, a space once decoded
    v = form.replace("fw", "0{a}-{b}-{c}").format(a=n[:2], b=n[2:6], c=n[6:])
    if form == "fw":
        v = v.translate(_FULLWIDTH)
    return v, v if form == "0{a}{b}{c}" else v[-9:]


@st.composite
def iban(draw, t: str):
    country, length = draw(st.sampled_from([("DE", 18), ("FR", 23), ("ES", 20), ("NL", 14), ("GB", 18),
                                            ("IT", 23)]))
    if country in ("NL", "GB"):
        bban = draw(st.sampled_from(["ABNA", "WEST", "INGB", "RABO"])) + "".join(
            str(draw(st.integers(0, 9))) for _ in range(length - 4))
    elif country == "IT":
        bban = "X" + "".join(str(draw(st.integers(0, 9))) for _ in range(22))
    else:
        bban = "".join(str(draw(st.integers(0, 9))) for _ in range(length))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    v = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if draw(st.booleans()):
        v = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
    if draw(st.integers(0, 4)) == 0:
        v = v.lower()
    return v, v[4:14]


@st.composite
def luhn_card(draw, t: str):
    prefix = draw(st.sampled_from(["4", "51", "55", "2221"]))
    body = prefix + "".join(str(draw(st.integers(0, 9))) for _ in range(15 - len(prefix)))
    v = _grouped(draw, _luhn_complete(body), (4, 4, 4, 4))
    return v, v[5:]


@st.composite
def ssn(draw, t: str):
    area = draw(st.integers(1, 665))
    v = f"{area:03d}{draw(st.sampled_from(['-', ' ']))}{draw(st.integers(1, 99)):02d}"
    v = f"{v}{v[3]}{draw(st.integers(1, 9999)):04d}"
    return v, v


@st.composite
def mynumber(draw, t: str):
    from privproxy.detectors import mynumber_ok

    body = "".join(str(draw(st.integers(0, 9))) for _ in range(11))
    digits = next(body + str(c) for c in range(10) if mynumber_ok(body + str(c)))
    v = _grouped(draw, digits, (4, 4, 4)) if draw(st.booleans()) else digits
    return v, v


@st.composite
def email_encoded(draw, t: str):
    local, domain = f"cnry.{t}", "example.co.jp"
    form = draw(st.sampled_from(["fullwidth", "&#64;", "&#x40;", "&commat;", "%40", "%2540", "base64", "b64url"]))
    if form == "fullwidth":
        v = f"{local}@{domain}".translate(_FULLWIDTH)
        return v, local.translate(_FULLWIDTH)
    if form.startswith("b"):
        raw = f"{draw(st.sampled_from(['', 'to:', 'x']))}{local}@{domain}".encode()
        v = (base64.b64encode(raw) if form == "base64" else base64.urlsafe_b64encode(raw)).decode()
        v = v if draw(st.booleans()) else v.rstrip("=")
        return v, v[:12]
    return f"{local}{form}{domain}", local


HELD_OUT = {"us_phone": us_phone, "jp_phone": jp_phone, "iban": iban, "luhn_card": luhn_card, "ssn": ssn,
            "mynumber": mynumber, "email_encoded": email_encoded}


@st.composite
def request_case(draw):
    secrets: list[str] = []

    def ident() -> str:
        v = f"CNRY{draw(tokens)}"
        secrets.append(v)
        return v

    def free() -> str:
        v, s = draw(canary())
        secrets.append(s)
        return v

    base = draw(st.sampled_from([None, *CASES]))  # a page, or a vendor beacon already full of canaries
    params = [(draw(st.sampled_from(ID_PARAMS)), ident()) for _ in range(draw(st.integers(0, 3)))]
    params += [(draw(st.sampled_from(FREE_NAMES)), free()) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):  # a URL nested in a parameter, with an email and a click id inside
        email, s = draw(canary("email"))
        secrets.append(s)
        params.append(("dl", f"https://shop.example/p?email={quote(email)}&gclid={ident()}"))
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
    cookies = [f"{draw(st.sampled_from(TRACKING_COOKIES))}=GA1.1.{ident()}" for _ in range(draw(st.integers(0, 3)))]
    headers = [("cookie", "; ".join(cookies + ["site_session=ok"]))]
    spoof, s = draw(canary("ip"))
    secrets.append(s)
    headers += [("x-forwarded-for", spoof), ("x-real-ip", spoof)]
    ref_email, s = draw(canary("email"))
    secrets.append(s)
    headers += [("referer", f"https://shop.example/cart?email={quote(ref_email)}&fbclid={ident()}"),
                ("user-agent", f"Mozilla/5.0 (X11; Linux x86_64) CnryUA/{draw(st.integers(1, 99))}.{ident()}")]
    peer, s = draw(canary("ip"))
    secrets.append(s)
    if draw(st.booleans()):  # an IPv6 client whose address carries an IPv4 one: truncated as that IPv4
        peer = embedded(peer, draw(st.sampled_from(["6to4", "nat64", "teredo", "mapped"])))
    for _ in range(draw(st.integers(0, 2))):  # address headers of CDNs and platforms, judged by their value
        v4, s = draw(canary("ip"))
        secrets.append(s)
        name = draw(st.sampled_from([*ADDRESS_HEADERS, f"X-{draw(tokens)}-Addr"]))
        headers.append((name, draw(st.sampled_from([v4, f"{v4}:443", f"[::ffff:{v4}]:8080", f"{v4}, 10.0.0.1"]))))
    if draw(st.booleans()):  # Unicode line separators that would split a log record for line readers
        sep = draw(st.sampled_from(SEPARATORS))
        headers = [(k, v + sep + "x" if k in ("referer", "user-agent") else v) for k, v in headers]
    if base is None:
        path = draw(st.sampled_from(["/", "/products", f"/health/{ident()}", "/members/profile",
                                     f"/cart;jsessionid={ident()}", "/p%E2%80%A8x"]))
        if path.startswith("/health") and draw(st.booleans()):
            path = draw(respelled(path))  # a sensitive page in another spelling is still generalized
        return ("GET", path + (f"?{query}" if query else ""), headers, b"", peer, secrets, False)
    b = base.beacon
    body = b.body
    hdrs = list(headers)
    ctype = b.content_type
    if body and b.content_type.startswith("application/json") and body.lstrip().startswith(b"{") \
            and draw(st.booleans()):
        # A duplicate key whose first value is an identifier: a first-wins parser reads it, JSON.parse does not.
        body = b'{"' + draw(st.sampled_from(ID_KEYS)).encode() + b'":"' + ident().encode() + b'",' \
            + body.lstrip()[1:]
    if body and not b.content_encoding:
        shape = draw(st.sampled_from(["plain"] * 3 + ["gzip", "members", "members-no-header", "bom", "multipart",
                                                     "ctype"]))
        if shape == "gzip":
            body = gzip.compress(body)  # some SDKs compress; the proxy must decode or refuse, never pass
            hdrs.append(("content-encoding", "gzip"))
        elif shape.startswith("members"):
            body = gzip_members(body, draw(st.lists(st.integers(0, len(body)), min_size=1, max_size=3)))
            if draw(st.booleans()):
                body += draw(st.sampled_from([b"garbage", b"\x00\x00", b"{}"]))  # after the last member
            if shape == "members":
                hdrs.append(("content-encoding", "gzip"))
        elif shape == "bom":
            body = b"\xef\xbb\xbf" + body
        elif shape == "multipart":
            body, ctype = multipart(body)
        else:
            ctype = draw(st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain", ""]))
    if ctype:
        hdrs.append(("content-type", ctype))
    if b.content_encoding:
        hdrs.append(("content-encoding", b.content_encoding))
    full_query = "&".join(x for x in (b.query, query) if x)
    if base.vendor == "matomo" and draw(st.booleans()):  # names as PHP reads them
        spelling = draw(st.sampled_from(PHP_SPELLINGS))
        def php(name: str) -> str:  # `.` and ` ` read as `_`: `.id` is `_id`
            return name.replace("_", ".", 1) if spelling == "dot" else spelling.format(name)

        full_query = "&".join(php(p.partition("=")[0]) + "=" + p.partition("=")[2]
                              if p.partition("=")[0] in ("uid", "_id", "cid", "cip") else p
                              for p in full_query.split("&"))
    path = b.path
    if draw(st.booleans()):
        path = draw(respelled(path))
    secrets.extend(VENDOR_CANARIES)
    return (b.method, path + (f"?{full_query}" if full_query else ""), hdrs, body, peer, secrets, True)


def run_flow(composite, method, path, headers, body, peer) -> http.HTTPFlow:
    hdrs = http.Headers([(b"host", b"shop.example")] + [(k.encode(), v.encode("utf-8", "surrogateescape"))
                                                         for k, v in headers]
                        + ([(b"content-length", str(len(body)).encode())] if body else []))
    f = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(), headers=hdrs, content=body,
                                    host="127.0.0.1", port=8080), resp=False)
    f.client_conn.peername = (peer, 40000)
    f.client_conn.timestamp_tls_setup = 946681201
    f.client_conn.tls_version = "TLSv1.3"
    composite.requestheaders(f)
    if f.response is None:
        settle(composite.request(f))
    return f


def settle(pending: object) -> None:
    """What a hook returned, awaited as mitmproxy awaits it (a large beacon scrubbed on a thread, the gateway)."""
    if pending is not None and inspect.isawaitable(pending):
        asyncio.run(_awaited(pending))


async def _awaited(pending) -> None:
    await pending


def forwarded_text(f: http.HTTPFlow) -> str:
    req = f.request
    return " ".join([all_text(req.path), all_text(req.raw_content or b""),
                     " ".join(f"{k}: {v}" for k, v in req.headers.items(multi=True))])


@pytest.fixture
def run_internals():
    """mitmproxy's header lookups and option reads as `privproxy run` replaces them (internals)."""
    internals.faster_header_lookups()
    internals.faster_option_reads()
    yield
    internals.faster_header_lookups(False)
    internals.faster_option_reads(False)


def test_no_canary_reaches_a_beacon_the_log_or_the_metrics(tmp_path, monkeypatch, run_internals):
    monkeypatch.setenv("PRIVPROXY_SECRET", "leak-guard-secret-0123456789abcdef")
    shared = SharedState()
    composite = privproxy.mitm.addon(shared)
    every_secret: set[str] = set()
    forwarded_beacons = flows = 0
    with taddons.context(composite) as tctx:
        tctx.configure(composite, privproxy_config=str(REPO / "filters.yaml"), privproxy_log_dir=str(tmp_path),
                       privproxy_log_format="both")

        @settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))
        @given(request_case())
        def one(case):
            nonlocal forwarded_beacons, flows
            flows += 1
            method, path, headers, body, peer, secrets, is_beacon = case
            every_secret.update(secrets)
            f = run_flow(composite, method, path, headers, body, peer)
            if is_beacon and f.response is None:  # forwarded toward the vendor
                forwarded_beacons += 1
                text = forwarded_text(f)
                leaked = [s for s in secrets if s in text]
                assert not leaked, (path, leaked, text[max(0, text.index(leaked[0]) - 300):][:400] if leaked else "")
            if f.response is None:
                f.response = tutils.tresp(status_code=204 if is_beacon else 200, content=b"")
            settle(composite.responseheaders(f))
            settle(composite.response(f))
            # the origin never sees a client address it was not given by privproxy, whatever the header's name
            sent = " ".join(v for _, v in f.request.headers.items(multi=True))
            assert peer not in sent and not [s for s in secrets if s in sent and s.count(".") == 3], sent

        one()
        exposition = generate_latest(shared.metrics.registry).decode()
        settle(composite.done())
    logs = "".join(p.read_text(errors="replace") for p in Path(tmp_path).iterdir() if p.is_file())
    records = (Path(tmp_path) / "access.jsonl").read_text(encoding="utf-8").splitlines()
    # Exactly one whole record per request, even with line separators in the request: every line is one record
    # to every line reader (str.splitlines splits on U+2028, U+2029 and NEL too).
    assert len(records) == flows and all(json.loads(r)["v"] == 1 for r in records)
    assert len((Path(tmp_path) / "access.log").read_text(encoding="utf-8").splitlines()) == flows
    assert forwarded_beacons > 0  # the search did exercise forwarded beacons, not only refusals
    leaked_log = sorted(s for s in every_secret if s in logs or s in all_text(logs))
    assert not leaked_log, leaked_log[:10]
    leaked_metrics = sorted(s for s in every_secret if s in exposition)
    assert not leaked_metrics, leaked_metrics
