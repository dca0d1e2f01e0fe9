"""privproxy reads requests as the receivers behind it do: differential tests against the real parsers.

nginx routes by its normalized `$uri`; Matomo reads parameter names through PHP; SDK servers inflate gzip and
parse JSON with Node's zlib and JSON.parse. Hypothesis generates the spellings, the real program is the
oracle (C2, C4, C8, C15; issue 17 item 3).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproxy import target
from privproxy.vendors import base as vbase
from privproxy.vendors import matomo
from tests.helpers import free_port, read_until_closed
from tests.tools import require

pytestmark = pytest.mark.e2e

NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {tmp}/error.log crit;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "$uri"; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    exe = require("nginx", "nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    tmp.chmod(0o755)
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = subprocess.Popen([exe, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, "nginx did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def nginx_uri(port: int, raw_target: str) -> tuple[int, str]:
    """(status, nginx's $uri) for a target sent byte for byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET " + raw_target.encode("utf-8", "surrogateescape") + b" HTTP/1.1\r\nHost: a\r\n"
                  b"Connection: close\r\n\r\n")
        data = read_until_closed(s)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "surrogateescape")


# Path spellings: segments of letters, dots and percent escapes (valid, invalid, encoded dots and slashes),
# joined by one or more slashes. `;` and `\` are left out here: nginx reads them literally, privproxy more
# strictly (see test_params_and_backslashes_only_add_normalization).
_piece = st.one_of(
    st.sampled_from(["g", "collect", "Collect", "health", "x", ".", "..", "", "matomo.php", "%63", "%2e", "%2E",
                     "%2e%2e", "%2F", "%2f", "%41", "%zz", "%", "%4", "%00", "%25", "%C3%A9", "%ff", "a%2Fb"]),
    st.text(alphabet="abcXYZ.-_~", min_size=1, max_size=4),
)
paths = st.lists(st.tuples(st.sampled_from(["/", "//", "///"]), st.lists(_piece, min_size=1, max_size=3)),
                 min_size=1, max_size=5).map(lambda parts: "".join(sep + "".join(seg) for sep, seg in parts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=paths)
def test_canonical_path_is_nginx_uri(nginx, raw):
    status, uri = nginx_uri(nginx, raw)
    try:
        ours = target.parse(raw)
    except target.TargetError:
        assert status == 400, f"privproxy refuses {raw!r}, nginx routes it to {uri!r}"
        return
    assert status == 200, f"nginx refuses {raw!r} ({status}), privproxy reads it as {ours.path!r}"
    assert ours.path == uri, raw
    assert ours.key == (uri.lower().rstrip("/") or "/")


@pytest.mark.parametrize("raw", ["//g/collect", "/g/%63ollect", "/./g/collect", "/x/../g/collect", "/g//collect",
                                 "/%2fg/collect", "/g/collect/.", "/matomo.ph%70", "/t%72", "/v1/%74"])
def test_issue_spellings_reach_the_collector_in_nginx_and_in_privproxy(nginx, raw):
    status, uri = nginx_uri(nginx, raw)
    assert status == 200
    assert target.parse(raw).path == uri


@pytest.mark.parametrize("raw, nginx_sees, privproxy_matches", [
    ("/cart;jsessionid=abc", "/cart;jsessionid=abc", "/cart"),  # Tomcat/Jetty strip ;params before routing
    ("/g/collect;x", "/g/collect;x", "/g/collect"),
    ("/g\\collect", "/g\\collect", "/g/collect"),  # the WHATWG URL parser reads \ as / in http(s) URLs
])
def test_params_and_backslashes_only_add_normalization(nginx, raw, nginx_sees, privproxy_matches):
    assert nginx_uri(nginx, raw) == (200, nginx_sees)
    assert target.parse(raw).path == privproxy_matches


# --- PHP: Matomo reads its parameters through $_GET/$_POST (parse_str rules) ---------------------------------
_name_chars = st.sampled_from(list("uid_ .[]x0") + ["%00", "%20", "%5B", "%5D", "+", "%2E"])
names = st.lists(_name_chars, min_size=1, max_size=8).map("".join)


def php_parse(query: str) -> dict:
    php = require("php", "php-cli")
    script = 'parse_str(stream_get_contents(STDIN), $o); echo json_encode($o, JSON_FORCE_OBJECT);'
    out = subprocess.run([php, "-r", script],
                         input=query.encode(), capture_output=True, timeout=30, check=True)
    return json.loads(out.stdout or b"[]") or {}


@settings(max_examples=150, deadline=None)
@given(raw=st.lists(names, min_size=1, max_size=6, unique=True))
def test_matomo_reads_names_as_php_does(raw):
    query = "&".join(f"{n}=v{i}" for i, n in enumerate(raw))
    php = php_parse(query)
    ours = matomo._params(query)
    # Every variable PHP sees is one privproxy classified under the same (base) name, with the same value.
    seen = {}
    for pair in ours.pairs:
        if pair[2] is not None:
            seen.setdefault(pair[1].partition("[")[0], []).append(pair[2])
    for name, value in php.items():
        assert name in seen, f"PHP reads {name!r} from {query!r}; privproxy classified {sorted(seen)}"
        values = value if isinstance(value, list) else list(_leaves(value))
        assert set(values) <= set(seen[name])
    # And the request privproxy forwards reads, in PHP, as the names privproxy classified.
    forwarded = php_parse(ours.encode())
    assert set(forwarded) == {n for n in seen if n}


def _leaves(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _leaves(x)
    elif isinstance(v, list):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


@pytest.mark.parametrize("raw, php_name", [("%20uid", "uid"), (".id", "_id"), ("uid%00x", "uid"), ("uid[]", "uid"),
                                           ("uid[a", "uid_a"), ("+uid", "uid"), ("_id[", "_id_")])
def test_issue_names_match_php(raw, php_name):
    assert php_name in php_parse(f"{raw}=1")
    assert any(p[1].partition("[")[0] == php_name for p in matomo._params(f"{raw}=1").pairs)


# --- Node: zlib and JSON.parse --------------------------------------------------------------------------------
def node(script: str, data: bytes) -> subprocess.CompletedProcess:
    exe = require("node", "nodejs")
    return subprocess.run([exe, "-e", script], input=data, capture_output=True, timeout=30)


NODE_GUNZIP = ("const z=require('zlib');let b=[];process.stdin.on('data',d=>b.push(d)).on('end',()=>{"
               "try{process.stdout.write(z.gunzipSync(Buffer.concat(b)))}catch(e){process.exit(3)}})")
NODE_JSON = ("let b=[];process.stdin.on('data',d=>b.push(d)).on('end',()=>{"
             "try{process.stdout.write(JSON.stringify(JSON.parse(Buffer.concat(b).toString('utf8'))))}"
             "catch(e){process.exit(3)}})")
LIMITS = vbase.Limits()


@settings(max_examples=60, deadline=None)
@given(members=st.lists(st.binary(max_size=200), min_size=1, max_size=4),
       tail=st.sampled_from([b"", b"garbage", b"\x00\x00", b"\x1f"]))
def test_gzip_members_as_node_reads_them(members, tail):
    data = b"".join(zlib.compress(m, wbits=31) for m in members) + tail
    theirs = node(NODE_GUNZIP, data)
    try:
        ours = vbase.gunzip(data, LIMITS)
    except vbase.CodecError:
        return  # refused: nothing is forwarded, whatever Node would read
    assert theirs.returncode == 0 and theirs.stdout == ours == b"".join(members)


@pytest.mark.parametrize("body", [
    b'{"userId":"ID","userId":null}',
    b'{"a":{"userId":"ID"},"a":{"x":1}}',
])
def test_duplicate_keys_go_out_as_privproxy_read_them(body):
    """JSON.parse keeps the last duplicate; privproxy forwards its own encoding, so the receiver reads exactly
    the document privproxy inspected, whichever duplicate a parser prefers."""
    decoded = vbase.loads(body, LIMITS)
    forwarded = vbase.dumps(decoded)
    theirs = node(NODE_JSON, forwarded)
    assert theirs.returncode == 0 and json.loads(theirs.stdout) == decoded
    assert b"ID" not in forwarded


def test_bom_is_refused_where_json_parse_would_fail(tmp_path):
    body = b"\xef\xbb\xbf" + b'{"events":[{"user_id":"ID"}]}'
    assert node(NODE_JSON, body).returncode == 3
    with pytest.raises(vbase.CodecError):
        vbase.open_body(vbase.Beacon("POST", "/2/httpapi", "", "application/json", "", body), LIMITS)
