"""privproxy's CPU per hostile request, at two sizes in one run: each input shape is driven through the real
addon chain (mitmproxy's test helpers, the shipped rules, a log directory and metrics), as bench/addon_chain.py
drives ordinary traffic, and the time ratio is compared with the size ratio (issue 17, Deliver 9).

    python bench/pathological.py [--only SUBSTRING] [--repeat 2] [--profile NAME] [--big-only]

For each shape it prints the CPU seconds of privproxy's hooks (requestheaders, request, responseheaders,
response) at the small and the large size, the size ratio, the time ratio and the growth exponent
log(time ratio) / log(size ratio): about 1 is linear, 2 quadratic. Exponents above 1.3 are flagged. Sizes stay
within what the proxy admits: 64 KiB request heads, 512 KiB beacon bodies, 2 MiB inflated.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gzip
import json
import math
import os
import pstats
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

from mitmproxy import http  # noqa: E402
from mitmproxy.test import taddons, tflow, tutils  # noqa: E402

import privproxy.mitm  # noqa: E402
from addon_chain import chain_hooks, through_chain  # noqa: E402 - bench/ is on sys.path when run as a script
from privproxy.mitm import flowview  # noqa: E402

try:
    from privproxy.mitm.shared import SharedState  # noqa: E402
except ImportError:  # a checkout from before the shared-state refactor, for a before/after comparison
    from privproxy.mitm.runtime import Runtime as SharedState  # type: ignore[no-redef]  # noqa: E402


def outcome_of(f: http.HTTPFlow) -> str:
    get = getattr(flowview, "outcome_of", None)
    return (get(f) if get is not None else f.metadata.get("privproxy_outcome")) or ""

KB = 1024
HEAD = (4 * KB, 56 * KB)  # the query, a header or the path: a 64 KiB head holds at most this much
BODY = (64 * KB, 500 * KB)  # under beacons.max_body_kb (512)
INFLATED = (256 * KB, 2000 * KB)  # under the 2 MiB inflated limit
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"


@dataclass
class Req:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""


def fill(unit: str, n: int, tail: str = "") -> str:
    """Whole units only: a cut `%2F` would make the request a 400 at one size and not at the other."""
    return unit * max(1, n // len(unit)) + tail


def page(query: str, headers: list[tuple[str, str]] | None = None) -> Req:
    return Req("GET", "/p?" + query, [("user-agent", UA), *(headers or [])])


def js(path: str, doc: object, gz: bool = False, query: str = "") -> Req:
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = [("content-type", "application/json"), ("user-agent", UA)]
    if gz:
        body = gzip.compress(body, 6)
        headers.append(("content-encoding", "gzip"))
    return Req("POST", path + (f"?{query}" if query else ""), headers, body)


def segment_props(value_of: Callable[[int], str], n: int) -> dict:
    """A Segment track call whose properties fill about n bytes with `value_of(i)` values."""
    props, size, i = {}, 0, 0
    while size < n:
        v = value_of(i)
        props[f"p{i}"] = v
        size += len(v) + len(str(i)) + 7
        i += 1
    return {"type": "track", "userId": "member-4711", "event": "x", "properties": props}


def b64(doc: object) -> str:
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def b64url(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def nested_url(n: int) -> str:
    """URLs nested in a parameter past scrub.MAX_DEPTH, each level encoded once more, the last one long."""
    from urllib.parse import quote
    url = "http://e.example/?q=" + fill("a", n // 3, "@") + "&email=x%40y.co"
    for _ in range(10):
        url = "http://e.example/r?u=" + quote(url, safe="")
    return url


def echo_copies(n: int) -> str:
    """A uid and many parameters holding copies of it in another case (echo search and replace)."""
    uid = "Member-4711-abcdef"
    part = "&x{i}=" + uid.upper() + "-tail"
    q, i = "uid=" + uid, 0
    while len(q) < n:
        q += part.format(i=i)
        i += 1
    return q


def echo_prefix(n: int) -> str:
    """An identifier that is a run of one letter with one other at its end, and a value of the same letter in
    another case with a copy at its end: a search that retries every start rereads the run each time."""
    m = n // 3
    uid = "a" * m + "b"
    return f"uid={uid}&x=" + "A" * (n - 2 * m) + uid.upper()


def many_ids_query(n: int) -> str:
    parts, i, size = [], 0, 0
    while size < n:
        p = f"uid=id{i:08d}xyz&v{i}=id{i:08d}xyz"
        parts.append(p)
        size += len(p) + 1
        i += 1
    return "&".join(parts)


def ga4_lines(n: int, line: Callable[[int], str]) -> Req:
    out, size, i = [], 0, 0
    while size < n:
        s = line(i)
        out.append(s)
        size += len(s) + 1
        i += 1
    return Req("POST", "/g/collect?v=2&tid=G-ABC123&cid=918273645.1700000000",
               [("content-type", "text/plain"), ("user-agent", UA)], "\n".join(out).encode())


def snowplow_cx_list(n: int) -> Req:
    """A cx field sent as a list: the first item does not decode (dropped, the list compacted), every other is
    a context holding the uid, replaced in each when the document settles."""
    ctx = b64url({"schema": "iglu:x/y/jsonschema/1-0-0", "data": [{"schema": "iglu:a/b/jsonschema/1-0-0",
                                                                 "data": {"note": "member-4711-abcdef"}}]})
    items = ["!!notbase64"] + [ctx] * max(1, n // (len(ctx) + 3))
    doc = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
           "data": [{"e": "pv", "uid": "member-4711-abcdef", "cx": items}]}
    return js("/com.snowplowanalytics.snowplow/tp2", doc)


def matomo_bulk(n: int) -> Req:
    reqs, size, i = [], 0, 0
    while size < n:
        r = f"?idsite=1&rec=1&_id={i:016x}&url=https%3A%2F%2Fs.example%2F%3Fv%3D{i:016x}"
        reqs.append(r)
        size += len(r) + 3
        i += 1
    return js("/matomo.php", {"requests": reqs})


def segment_batch_ids(n: int) -> Req:
    batch, size, i = [], 0, 0
    while size < n:
        m = {"type": "track", "userId": f"user-{i:010d}", "anonymousId": f"anon-{i:010d}",
             "properties": {"note": f"seen user-{i:010d} anon-{i:010d}"}}
        batch.append(m)
        size += len(json.dumps(m)) + 1
        i += 1
    return js("/v1/batch", {"batch": batch})


def _recorded(sdk: str, path_prefix: str) -> dict:
    """The JSON body of a request the SDK really sent (tests/unit/vendors/recordings), decoded."""
    doc = json.loads((HERE.parent / "tests/unit/vendors/recordings/browser-sdks.json").read_text())
    for r in doc["requests"]:
        if r["sdk"] == sdk and r["path"].startswith(path_prefix):
            body = base64.b64decode(r["body"])
            return json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
    raise LookupError(sdk)


def real_batch(vendor: str, n: int, gz: bool = False) -> Req:
    """Ordinary traffic at the limits: a batch of real SDK events (ids made distinct) of about n bytes."""
    if vendor == "segment":
        one, path, wrap = _recorded("@segment/analytics-next", "/v1/t"), "/v1/batch", lambda b: {"batch": b}
        ids = ("userId", "anonymousId", "messageId")
    elif vendor == "posthog":
        got = _recorded("posthog-js", "/e/")  # {"api_key": ..., "batch": [event, ...]}
        one, path = got["batch"][0], "/batch/"
        def wrap(b: list) -> dict:
            return {"api_key": got["api_key"], "batch": b}
        ids = ("uuid",)
    else:
        got = _recorded("@amplitude/analytics-browser", "/2/httpapi")
        one, path = got["events"][0], "/2/httpapi"
        wrap, ids = (lambda b: {"api_key": "k", "events": b}), ("insert_id", "device_id")
    size = len(json.dumps(one))
    batch = []
    for i in range(max(1, n // (size + 20))):
        e = json.loads(json.dumps(one))
        for k in ids:
            if k in e:
                e[k] = f"{e[k]}-{i}"
        batch.append(e)
    return js(path, wrap(batch), gz=gz)


FORM = "application/x-www-form-urlencoded"


def elements_chain(chain: str) -> Req:
    return js("/e/", {"event": "$autocapture", "distinct_id": "d1", "properties": {"$elements_chain": chain}})


def gzipped(r: Req) -> Req:
    return Req(r.method, r.path, r.headers + [("content-encoding", "gzip")], gzip.compress(r.body))


SHAPES: dict[str, tuple[tuple[int, int], Callable[[int], Req]]] = {
    # --- request head: query, path, headers, cookies ----------------------------------------------------
    "query a*n@": (HEAD, lambda n: page("q=" + fill("a", n, "@"))),
    "query near-emails a@a.": (HEAD, lambda n: page("q=" + fill("a@a.", n))),
    "query local run .@": (HEAD, lambda n: page("q=" + fill("a.", n, "@b"))),
    "query digits+spaces": (HEAD, lambda n: page("q=" + fill("1+", n))),
    "query digits-dashes": (HEAD, lambda n: page("q=" + fill("1-", n))),
    "query card-ish": (HEAD, lambda n: page("q=" + fill("4111+1111+1111+1111+", n))),
    "query plus-digits": (HEAD, lambda n: page("q=" + fill("%2B1", n))),
    "query colons hex": (HEAD, lambda n: page("q=" + fill("a:", n))),
    "query colons": (HEAD, lambda n: page("q=" + fill(":", n))),
    "query dotted quads": (HEAD, lambda n: page("q=" + fill("1.1.1.1+", n))),
    "query dots digits": (HEAD, lambda n: page("q=" + fill("1.", n))),
    "query hex dots": (HEAD, lambda n: page("q=" + fill("0x1.0xa1.", n))),
    "query jwt heads": (HEAD, lambda n: page("q=" + fill("eyJaaaa.eyJ", n))),
    "query many params": (HEAD, lambda n: page(fill("a=1&", n))),
    "query many emails": (HEAD, lambda n: page(fill("e=jane%40example.com&", n))),
    "query nested URLs": (HEAD, lambda n: page("u=" + nested_url(n).replace("&", "%26"))),
    "query nested URL chain": (HEAD, lambda n: page("u=" + fill("http://a/?u=", n))),
    "query echo copies": (HEAD, lambda n: page(echo_copies(n))),
    "query echo prefix": (HEAD, lambda n: page(echo_prefix(n))),
    "query many identifiers": (HEAD, lambda n: page(many_ids_query(n))),
    "query matrix params": (HEAD, lambda n: Req("GET", "/a" + fill(";x=1", n) + "/b", [("user-agent", UA)])),
    "path many segments": (HEAD, lambda n: Req("GET", fill("/a", n), [("user-agent", UA)])),
    "path dot segments": (HEAD, lambda n: Req("GET", "/a" + fill("/./b/..", n), [("user-agent", UA)])),
    "path %2F segments": (HEAD, lambda n: Req("GET", fill("/x%2Fa", n), [("user-agent", UA)])),
    "path email segment": (HEAD, lambda n: Req("GET", "/u/" + fill("a", n, "@"), [("user-agent", UA)])),
    "path jsessionid": (HEAD, lambda n: Req("GET", fill("/c;jsessionid=1", n), [("user-agent", UA)])),
    "cookie many": (HEAD, lambda n: page("", [("cookie", fill("a=1; ", n))])),
    "cookie comma-joined": (HEAD, lambda n: page("", [("cookie", fill("a=1, _ga=GA1.1.1.2, ", n))])),
    "cookie commas no =": (HEAD, lambda n: page("", [("cookie", "x=" + fill(",a", n))])),
    "header address list": (HEAD, lambda n: page("", [("x-foo", fill("1.1.1.256, ", n))])),
    "header many tokens": (HEAD, lambda n: page("", [("x-foo", fill("a.b ", n))])),
    "many headers": (HEAD, lambda n: page("", [(f"x-h{i}", "1.2.3.4") for i in range(n // 16)])),
    "user-agent Version/": (HEAD, lambda n: Req("GET", "/", [("user-agent", fill("Version/1 ", n))])),
    "user-agent Chrome/": (HEAD, lambda n: Req("GET", "/", [("user-agent", fill("Chrome/", n))])),
    "user-agent bot": (HEAD, lambda n: Req("GET", "/", [("user-agent", fill("Mobile/a", n))])),
    "referer nested": (HEAD, lambda n: page("", [("referer", "https://r.example/?" + fill("u=http://a/?", n))])),
    "beacon GET ga4 a*n@": (HEAD, lambda n: Req("GET", "/g/collect?v=2&cid=1.2&ep.x=" + fill("a", n, "@"),
                                                [("user-agent", UA)])),
    "beacon GET echo prefix": (HEAD, lambda n: Req("GET", "/g/collect?v=2&" + echo_prefix(n).replace("x=", "ep.x="),
                                                   [("user-agent", UA)])),
    "beacon GET matomo php []": (HEAD, lambda n: Req("GET", "/matomo.php?idsite=1&a" + fill("[]", n) + "=1",
                                                     [("user-agent", UA)])),
    "beacon GET matomo php [x]": (HEAD, lambda n: Req("GET", "/matomo.php?idsite=1&a" + fill("[x]", n) + "=1",
                                                      [("user-agent", UA)])),
    "beacon referer": (HEAD, lambda n: Req("GET", "/g/collect?v=2&cid=1.2",
                                           [("user-agent", UA), ("referer", "https://r/?q=" + fill("a", n, "@"))])),
    # --- ordinary traffic at the limits, for comparison ------------------------------------------------------
    "real segment batch": (BODY, lambda n: real_batch("segment", n)),
    "real posthog batch": (BODY, lambda n: real_batch("posthog", n)),
    "real amplitude batch": (BODY, lambda n: real_batch("amplitude", n)),
    "real posthog batch gzip": (INFLATED, lambda n: real_batch("posthog", n, gz=True)),
    "real segment batch gzip": (INFLATED, lambda n: real_batch("segment", n, gz=True)),
    # --- beacon bodies --------------------------------------------------------------------------------------
    "segment prop a*n@": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                       "properties": {"x": fill("a", n, "@")}})),
    "segment prop near-emails": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                              "properties": {"x": fill("a@b.", n)}})),
    "segment prop digits": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                         "properties": {"x": fill("1 2-", n)}})),
    "segment prop colons hex": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                             "properties": {"x": fill("ab:", n)}})),
    "segment many props": (BODY, lambda n: js("/v1/t", segment_props(lambda i: "v", n))),
    "segment many email props": (BODY, lambda n: js("/v1/t", segment_props(lambda i: f"j{i}@example.com", n))),
    "segment url prop": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                      "properties": {"url": "http://a/?" + fill("u=http://a/?", n)}})),
    "segment echo copies": (BODY, lambda n: js("/v1/t", segment_props(lambda i: "MEMBER-4711-ABCDEF-x", n)
                                               | {"userId": "member-4711-abcdef"})),
    "segment echo prefix": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "a" * (n // 3) + "b",
                                                         "properties": {"x": "A" * (n // 3) + "a" * (n // 3) + "B"}})),
    "segment batch ids": (BODY, segment_batch_ids),
    "segment huge key": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                      "properties": {fill("k", n): "v"}})),
    "segment huge key email": (BODY, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                            "properties": {fill("k", n, "@"): "v"}})),
    "ga4 lines empty": (BODY, lambda n: ga4_lines(n, lambda i: "")),
    "ga4 lines cids": (BODY, lambda n: ga4_lines(n, lambda i: f"en=x&cid={i:010d}.1700000000&ep.a=v{i:010d}")),
    "ga4 lines many params": (BODY, lambda n: ga4_lines(n, lambda i: "a=1&" * 64)),
    "mixpanel b64 props": (BODY, lambda n: Req("POST", "/track", [("content-type", FORM)], ("data=" + b64(
        {"event": "x", "properties": {"distinct_id": "member-4711", "x": fill("a@b.", n * 3 // 4)}})).encode())),
    "posthog elements_chain": (BODY, lambda n: elements_chain(fill("a", n))),
    "posthog elements_chain quote": (BODY, lambda n: elements_chain('a="' + fill("a", n))),
    "posthog elements_chain attrs": (BODY, lambda n: elements_chain(fill('a="b"', n * 5 // 7))),
    "snowplow cx list compacted": (BODY, snowplow_cx_list),
    "matomo bulk ids": (BODY, matomo_bulk),
    "matomo form php names": (BODY, lambda n: Req("POST", "/matomo.php", [("content-type", FORM)],
                                                  ("idsite=1&a" + fill("[x]", n) + "=1").encode())),
    # --- inflated bodies --------------------------------------------------------------------------------------
    "gzip segment prop near-emails": (INFLATED, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                                       "properties": {"x": fill("a@b.", n)}}, gz=True)),
    "gzip segment many props": (INFLATED, lambda n: js("/v1/t", segment_props(lambda i: "v", n), gz=True)),
    "gzip segment digits": (INFLATED, lambda n: js("/v1/t", {"type": "track", "userId": "u1",
                                                             "properties": {"x": fill("1 2-", n)}}, gz=True)),
    "gzip ga4 lines cids": (INFLATED, lambda n: gzipped(
        ga4_lines(n, lambda i: f"en=x&cid={i:010d}.1700000000&ep.a=v{i:010d}"))),
    "gzip segment batch ids": (INFLATED, lambda n: gzipped(segment_batch_ids(n))),
    "gzip segment echo copies": (INFLATED, lambda n: js("/v1/t", segment_props(lambda i: "MEMBER-4711-ABCDEF-x", n)
                                                        | {"userId": "member-4711-abcdef"}, gz=True)),
}


class GaveUp(BaseException):  # not Exception: the hooks catch those and fail closed
    pass


def _give_up(*_: object) -> None:
    raise GaveUp


signal.signal(signal.SIGPROF, _give_up)


def flow_of(r: Req, serial: int) -> http.HTTPFlow:
    headers = [(b"host", b"shop.example")] + [(k.encode(), v.encode()) for k, v in r.headers]
    if r.body:
        headers.append((b"content-length", str(len(r.body)).encode()))
    f = tflow.tflow(req=tutils.treq(method=r.method.encode(), path=r.path.encode(), headers=http.Headers(headers),
                                    content=r.body, host="127.0.0.1", port=8080), resp=False)
    f.client_conn.peername = (f"198.51.{serial // 250 % 250}.{serial % 250 + 1}", 40000 + serial % 20000)
    return f


def run_once(chain: list[object], r: Req, serial: int) -> tuple[float, http.HTTPFlow]:
    """Seconds privproxy's hooks take for one request, one thread (the origin's answer is made before the clock
    starts). Wall time: CPU clocks here tick in 4 ms steps."""
    hooks = chain_hooks(chain)
    f = flow_of(r, serial)
    answer = tutils.tresp(status_code=200, content=b"ok")
    t0 = time.perf_counter()
    through_chain(hooks, f, answer)
    return time.perf_counter() - t0, f


def salted(r: Req, serial: int) -> Req:
    """The request made unique, so no cache (targets, user agents, rule lookups, cookies) answers it from memory:
    a beacon gets one more query parameter, a page one more leading path segment, every header value a suffix."""
    headers = [(k, f"{v} {serial}" if k in ("user-agent", "referer") else
                f"{v}; _z={serial}" if k == "cookie" else v) for k, v in r.headers]
    if r.path.startswith(("/g/collect", "/matomo.php", "/track", "/v1/", "/e/", "/com.snowplow", "/batch",
                          "/2/httpapi")):
        sep = "&" if "?" in r.path else "?"
        return Req(r.method, r.path + f"{sep}_z{serial}=1", headers, r.body)
    return Req(r.method, f"/z{serial}{r.path}", headers, r.body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--repeat", type=int, default=2, help="runs per size; the best counts")
    ap.add_argument("--profile", default="", help="profile the large size of this shape")
    ap.add_argument("--big-only", action="store_true", help="only the large size (faster when hunting)")
    ap.add_argument("--give-up", type=float, default=30, help="seconds after which a run is reported as over")
    args = ap.parse_args()
    os.environ.setdefault("PRIVPROXY_SECRET", "bench-secret-0123456789abcdef0123456789")
    rt = SharedState()
    chain = privproxy.mitm.addons(rt)
    serial = 0
    print(f"{'shape':34} {'small':>8} {'large':>8} {'t small':>9} {'t large':>9} {'size x':>7} {'time x':>7} "
          f"{'exp':>5}  answer")
    with tempfile.TemporaryDirectory() as d, taddons.context(*chain) as tctx:
        tctx.configure(chain[0], privproxy_config=str(HERE.parent / "filters.yaml"), privproxy_log_dir=d)
        assert rt.policy is not None, "the rules did not load"
        for name, ((small, large), make) in SHAPES.items():
            if args.only and args.only not in name:
                continue
            times = []
            sizes = []
            answers = []
            for n in ((large,) if args.big_only else (small, large)):
                req = make(n)
                sizes.append(n)  # the shape's own size (inflated for gzip bodies)
                best = float("inf")
                for _ in range(args.repeat):
                    serial += 1
                    if args.profile and args.profile == name and n == large:
                        prof = cProfile.Profile()
                        prof.enable()
                    signal.setitimer(signal.ITIMER_PROF, args.give_up)
                    try:
                        t, f = run_once(chain, salted(req, serial), serial)
                    except GaveUp:
                        t, f = float("inf"), None
                    finally:
                        signal.setitimer(signal.ITIMER_PROF, 0)
                    if args.profile and args.profile == name and n == large:
                        prof.disable()
                        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
                    best = min(best, t)
                    status = "gave up" if f is None else \
                        f"{f.response.status_code if f.response else '-'} {outcome_of(f)}".strip()
                    if f is None:
                        break
                times.append(best)
                answers.append(status)
            status = " / ".join(answers) if len(set(answers)) > 1 else answers[0]
            if args.big_only:
                print(f"{name:34} {'':>8} {sizes[0]:>8} {'':>9} {times[0]:>9.4f}  {status}", flush=True)
                continue
            size_x, time_x = sizes[1] / sizes[0], times[1] / max(times[0], 1e-4)
            exponent = math.log(max(time_x, 1e-9)) / math.log(size_x)
            flag = "  <-- super-linear" if exponent > 1.3 and times[1] > 0.05 else ""
            print(f"{name:34} {sizes[0]:>8} {sizes[1]:>8} {times[0]:>9.4f} {times[1]:>9.4f} {size_x:>7.1f} "
                  f"{time_x:>7.1f} {exponent:>5.2f}  {status}{flag}", flush=True)
        for a in chain:
            if hasattr(a, "done"):
                a.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
