"""The operator's certificates under a running proxy, with real TLS clients on loopback (C1, C15): certbot's and
cert-manager's files as they are; replaced in place, by an atomic rename, by certbot's renewal links or by the
kubelet's `..data` swap of a mounted Secret, a new handshake gets the new certificate within 2 s while an open
keep-alive connection goes on; a broken replacement keeps the old one and is counted; SIGHUP re-reads
filters.yaml and the certificates and never stops the proxy; IPv6 listeners; operators see their own addresses."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.certs import Authority, Issued
from tests.helpers import metric, Origin, privproxy_exe, start_proxy

pytestmark = pytest.mark.e2e
SITE = "shop.example"
WITHIN = 2.0  # seconds from a replaced file to the first new handshake that gets it (issue 20)


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority()


@pytest.fixture
def root(ca, tmp_path) -> Path:
    return ca.root_pem(tmp_path / "root.pem")


def served(port: int, root: Path, sni: str = SITE, host: str = "127.0.0.1") -> x509.Certificate:
    """The certificate a new TLS connection gets, verified by a client that trusts only the root (so the proxy
    sent the intermediate)."""
    ctx = ssl.create_default_context(cafile=str(root))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as raw:
        raw.settimeout(5)
        raw.connect((host, port))
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def wait_served(port: int, root: Path, serial: int, timeout: float = 10.0, sni: str = SITE) -> float:
    """Seconds until a new handshake gets the certificate with this serial (new connections every 20 ms)."""
    start = time.monotonic()
    while served(port, root, sni).serial_number != serial:
        assert time.monotonic() - start < timeout, "the new certificate was never served"
        time.sleep(0.02)
    return time.monotonic() - start


class KeepAlive:
    """One HTTPS connection held open across the swap."""

    def __init__(self, port: int, root: Path, host: str = "127.0.0.1") -> None:
        self.conn = http.client.HTTPSConnection(SITE, port, timeout=10)
        raw = socket.create_connection((host, port), timeout=10)
        self.conn.sock = self.sock = ssl.create_default_context(cafile=str(root)).wrap_socket(raw, server_hostname=SITE)

    def get(self, path: str) -> int:
        self.conn.request("GET", path, headers={"Host": SITE})
        r = self.conn.getresponse()
        r.read()
        assert self.conn.sock is self.sock, "the connection was not kept open"
        return r.status

    def serial(self) -> int:
        return x509.load_der_x509_certificate(self.sock.getpeercert(binary_form=True)).serial_number

    def close(self) -> None:
        self.conn.close()


def wait_stderr(p, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in p.stderr():
        assert time.monotonic() < deadline, f"{text!r} not in:\n{p.stderr()}"
        time.sleep(0.05)
    return p.stderr()


# --- How the files arrive: each layout as the tool that writes it lays it out ---------------------------------


class Layout:
    """Where privproxy reads the certificate and key, and how a renewal replaces them."""

    def __init__(self, d: Path) -> None:
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.n = 0

    cert_name, key_name = "fullchain.pem", "privkey.pem"

    @property
    def cert(self) -> Path:
        return self.d / self.cert_name

    @property
    def key(self) -> Path:
        return self.d / self.key_name

    def publish(self, issued: Issued) -> None:
        raise NotImplementedError

    def args(self) -> list[str]:
        return ["--cert", str(self.cert), "--key", str(self.key)]


class Rewrite(Layout):
    """`cp` over the old files: the same inodes truncated and rewritten, certificate first."""

    def publish(self, issued: Issued) -> None:
        self.cert.write_bytes(issued.fullchain())
        self.key.write_bytes(issued.privkey())


class Rename(Layout):
    """Written beside and renamed over (what most tools and `install` do): each path switches atomically."""

    def publish(self, issued: Issued) -> None:
        for path, data in ((self.cert, issued.fullchain()), (self.key, issued.privkey())):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)


class Certbot(Layout):
    """certbot renew without a deploy hook: archive/DOMAIN/fullchainN.pem and privkeyN.pem, and the links in
    live/DOMAIN/ re-pointed one after the other."""

    def publish(self, issued: Issued) -> None:
        self.n += 1
        archive = self.d / "archive"
        archive.mkdir(exist_ok=True)
        (archive / f"fullchain{self.n}.pem").write_bytes(issued.fullchain())
        (archive / f"privkey{self.n}.pem").write_bytes(issued.privkey())
        for name in ("fullchain", "privkey"):
            tmp = self.d / f"{name}.pem.new"
            tmp.symlink_to(f"archive/{name}{self.n}.pem")
            os.replace(tmp, self.d / f"{name}.pem")


class Kubelet(Layout):
    """A Secret mounted as a volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>; an update writes a new
    timestamped directory, renames a new `..data` link over the old one, and removes the old directory."""

    cert_name, key_name = "tls.crt", "tls.key"

    def publish(self, issued: Issued) -> None:
        self.n += 1
        new = self.d / f"..2026_12_01_00_00_0{self.n}.{self.n}"
        new.mkdir()
        (new / "tls.crt").write_bytes(issued.fullchain())
        (new / "tls.key").write_bytes(issued.privkey())
        (new / "ca.crt").write_bytes(b"")  # cert-manager's third key; privproxy does not read it
        data = self.d / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        (self.d / "..data_tmp").symlink_to(new.name)
        os.replace(self.d / "..data_tmp", data)
        for name in ("tls.crt", "tls.key", "ca.crt"):
            if not (self.d / name).is_symlink():
                (self.d / name).symlink_to(f"..data/{name}")
        if old is not None:
            for f in (self.d / old).iterdir():
                f.unlink()
            (self.d / old).rmdir()


LAYOUTS = {"rewrite": Rewrite, "rename": Rename, "certbot": Certbot, "kubelet": Kubelet}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_renewal_reaches_new_handshakes_within_2s_and_open_connections_go_on(tmp_path, origin, ca, root, layout):
    files = LAYOUTS[layout](tmp_path / "tls")
    first, renewed = ca.issue(SITE), ca.issue(SITE)
    files.publish(first)
    p = start_proxy(tmp_path / "p", origin.url, *files.args(), metrics=True)
    conn = KeepAlive(p.port, root)
    try:
        assert served(p.port, root).serial_number == first.serial
        assert conn.get("/before") == 200
        files.publish(renewed)
        elapsed = wait_served(p.port, root, renewed.serial)
        assert conn.get("/after") == 200 and conn.serial() == first.serial  # the open connection went on
        assert metric(p, "privproxy_certificate_reloads_total", result="success") == 1
        assert metric(p, "privproxy_certificate_reloads_total", result="failure") == 0
    finally:
        conn.close()
        p.stop()
    print(f"{layout}: new handshakes got the renewed certificate {elapsed:.3f} s after it was written")
    assert elapsed < WITHIN
    assert "now serving serial" in p.stderr() and str(files.cert) in p.stderr()


def mismatched_key(ca: Authority, files: Layout) -> None:
    files.key.write_bytes(ca.issue(SITE).privkey())


def expired(ca: Authority, files: Layout) -> None:
    files.publish(ca.issue(SITE, expired=True))


def emptied(ca: Authority, files: Layout) -> None:
    files.cert.write_bytes(b"")


BROKEN = {"key of another certificate": (mismatched_key, "does not belong to the certificate"),
          "expired": (expired, "expired on"), "emptied": (emptied, "no PEM certificate")}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_replacement_keeps_the_old_certificate_and_is_counted(tmp_path, origin, ca, root, broken):
    files = Rename(tmp_path / "tls")
    first = ca.issue(SITE)
    files.publish(first)
    p = start_proxy(tmp_path / "p", origin.url, *files.args(), metrics=True)
    conn = KeepAlive(p.port, root)
    try:
        spoil, says = BROKEN[broken]
        spoil(ca, files)
        log = wait_stderr(p, "still serving the previous certificate")
        assert says in log and str(files.cert) in log and " — " in log  # the file and what to do
        assert served(p.port, root).serial_number == first.serial
        assert conn.get("/still") == 200
        assert metric(p, "privproxy_certificate_reloads_total", result="failure") == 1
        time.sleep(1.2)  # looked at again and again: reported once
        assert metric(p, "privproxy_certificate_reloads_total", result="failure") == 1
        fixed = ca.issue(SITE)
        files.publish(fixed)
        assert wait_served(p.port, root, fixed.serial) < WITHIN
        assert metric(p, "privproxy_certificate_reloads_total", result="success") == 1
    finally:
        conn.close()
        p.stop()


def invisible_edit(path: Path, old: str, new: str) -> None:
    """Change the file without changing what the poll compares (size, mtime, inode): only SIGHUP can see it."""
    assert len(old) == len(new)
    st = os.stat(path)
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_sighup_rereads_filters_and_certificates_and_the_proxy_lives_on(tmp_path, origin, ca, root):
    cfg = tmp_path / "filters.yaml"
    cfg.write_text("version: 1\nrules:\n  - {id: a, action: drop, scopes: [query], names: [foo]}\n")
    files = Kubelet(tmp_path / "tls")
    first = ca.issue(SITE)
    files.publish(first)
    p = start_proxy(tmp_path / "p", origin.url, *files.args(), config=cfg, metrics=True)
    conn = KeepAlive(p.port, root)
    try:
        assert conn.get("/1?foo=x1&bar=y1") == 200
        invisible_edit(cfg, "names: [foo]", "names: [bar]")
        time.sleep(1.5)  # the poll saw nothing
        assert conn.get("/2?foo=x2&bar=y2") == 200
        p.proc.send_signal(signal.SIGHUP)
        wait_stderr(p, "reloaded " + str(cfg))
        assert conn.get("/3?foo=x3&bar=y3") == 200
        # the certificates were re-read too (unchanged files: the poll alone would not have counted them)
        assert metric(p, "privproxy_certificate_reloads_total", result="success") == 1
        assert metric(p, "privproxy_config_reloads_total", result="success") == 2  # start, SIGHUP
        # a renewal followed by `systemctl reload`: served at once
        renewed = ca.issue(SITE)
        files.publish(renewed)
        p.proc.send_signal(signal.SIGHUP)
        assert wait_served(p.port, root, renewed.serial) < WITHIN
        invisible_edit(cfg, "names: [bar]", "names: [bax ")  # broken: refused, counted, the rules stay
        p.proc.send_signal(signal.SIGHUP)
        wait_stderr(p, "keeping the previous rules")
        assert metric(p, "privproxy_config_reloads_total", result="failure") == 1
        for _ in range(3):
            p.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert p.proc.poll() is None  # SIGHUP never stops it
        assert conn.get("/4?foo=x4&bar=y4") == 200
        assert conn.serial() == first.serial and served(p.port, root).serial_number == renewed.serial
        records = p.log_records(wait_for=4)
    finally:
        conn.close()
        assert p.stop() == 0
    assert [r["path"] for r in records] == ["/1?bar=y1", "/2?bar=y2", "/3?foo=x3", "/4?foo=x4"]
    assert "SIGHUP: re-reading" in p.stderr()


def test_several_certificates_by_sni_and_a_combined_pem(tmp_path, origin, ca, root):
    shop, blog = ca.issue(SITE, "www." + SITE), ca.issue("blog.example")
    shop.write(tmp_path / "shop.crt", tmp_path / "shop.key")
    blog.write(tmp_path / "blog.pem")  # key and chain in one file, as before --key existed
    p = start_proxy(tmp_path / "p", origin.url, "--cert", str(tmp_path / "shop.crt"), "--key",
                    str(tmp_path / "shop.key"), "--cert", f"blog.example={tmp_path / 'blog.pem'}")
    try:
        assert served(p.port, root, SITE).serial_number == shop.serial
        assert served(p.port, root, "www." + SITE).serial_number == shop.serial
        assert served(p.port, root, "blog.example").serial_number == blog.serial
        ctx = ssl.create_default_context(cafile=str(root))
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="other.example") as tls:  # no certificate names it
            assert x509.load_der_x509_certificate(tls.getpeercert(True)).serial_number == shop.serial
    finally:
        p.stop()


def run_fails(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(privproxy_exe() + list(args), capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PRIVPROXY_SECRET": "test-secret-0123456789"})
    assert r.returncode != 0
    return r


def test_a_certificate_that_cannot_be_served_stops_the_start_with_the_file_and_the_fix(tmp_path, origin, ca):
    issued = ca.issue(SITE)
    issued.write(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    (tmp_path / "other.pem").write_bytes(ca.issue(SITE).privkey())
    base = ["run", "--upstream", origin.url, "--listen", "127.0.0.1:0", "--confdir", str(tmp_path / "conf")]
    r = run_fails(*base, "--cert", str(tmp_path / "fullchain.pem"), "--key", str(tmp_path / "other.pem"))
    assert f"{tmp_path / 'other.pem'}: this private key does not belong to the certificate" in r.stderr
    r = run_fails(*base, "--cert", str(tmp_path / "fullchain.pem"))
    assert "name the key file with --key" in r.stderr
    r = run_fails(*base, "--key", str(tmp_path / "privkey.pem"), "--cert", str(tmp_path / "fullchain.pem"))
    assert "put each --key right after the --cert it belongs to" in r.stderr


def test_without_a_certificate_run_says_where_its_trial_ca_is(tmp_path, origin, ca):
    p = start_proxy(tmp_path / "p", origin.url)
    p.stop()
    assert "for trials only" in p.stderr() and f"curl --cacert {p.ca}" in p.stderr()
    assert "--cert fullchain.pem --key privkey.pem" in p.stderr()
    issued = ca.issue(SITE)
    issued.write(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    p = start_proxy(tmp_path / "q", origin.url, "--cert", str(tmp_path / "fullchain.pem"), "--key",
                    str(tmp_path / "privkey.pem"))
    p.stop()
    assert "for trials only" not in p.stderr()


# --- IPv6 and the operator's own addresses ---------------------------------------------------------------------


def test_ipv6_listener_serves_and_its_startup_line_shows_the_address(tmp_path, origin, ca, root):
    issued = ca.issue(SITE)
    issued.write(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    p = start_proxy(tmp_path / "p", origin.url, "--listen", "[::1]:0", "--cert", str(tmp_path / "fullchain.pem"),
                    "--key", str(tmp_path / "privkey.pem"), "-v")
    try:
        listen = json.loads((tmp_path / "p" / "ready.json").read_text())["listen"]
        (v6,) = [port for host, port in listen if host == "::1"]
        assert served(v6, root, host="::1").serial_number == issued.serial
        conn = KeepAlive(v6, root, host="::1")
        assert conn.get("/v6?x=1") == 200
        conn.close()
        records = p.log_records(wait_for=1)
    finally:
        p.stop()
    assert f"privproxy: serving https://[::1]:{v6}/ and http://[::1]:{v6}/" in p.stderr()
    assert records[-1]["client"] == "::"  # the visitor's address is truncated, as ever
    assert origin.last().headers["x-forwarded-for"] == ["::"]


def both_families_port() -> int:
    """A port free on 127.0.0.1 and on ::1 (loopback only: the tests never listen on a wildcard address)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET6) as v6, socket.socket(socket.AF_INET) as v4:
            v6.bind(("::1", 0))
            try:
                v4.bind(("127.0.0.1", v6.getsockname()[1]))
            except OSError:
                continue
            return v6.getsockname()[1]
    raise AssertionError("no port free on both loopback addresses")


def test_one_port_on_both_families_as_the_readme_listens(tmp_path, origin, ca, root):
    # the README's `--listen 0.0.0.0:443 --listen [::]:443`, on loopback: two listeners on one port
    port = both_families_port()
    issued = ca.issue(SITE)
    issued.write(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    p = start_proxy(tmp_path / "p", origin.url, "--listen", f"127.0.0.1:{port}", "--listen", f"[::1]:{port}",
                    "--cert", str(tmp_path / "fullchain.pem"), "--key", str(tmp_path / "privkey.pem"))
    try:
        for host in ("127.0.0.1", "::1"):
            conn = KeepAlive(port, root, host=host)
            assert conn.get(f"/from-{host}") == 200 and conn.serial() == issued.serial
            conn.close()
    finally:
        p.stop()
    assert f"serving https://127.0.0.1:{port}/" in p.stderr() and f"serving https://[::1]:{port}/" in p.stderr()
    # what the start-up line says for the wildcard addresses (not bound here)
    from privproxy.cli.run import serving

    assert serving("::", 443) == ("serving https://[::1]:443/ and http://[::1]:443/ (redirects to HTTPS) on every "
                                  "IPv6 address ([::]:443)")
    assert serving("0.0.0.0", 443).endswith("on every IPv4 address (0.0.0.0:443)")


@pytest.mark.parametrize("family,host,shown", [(socket.AF_INET6, "::1", "::1"),
                                                (socket.AF_INET, "127.0.0.1", "127.0.0.1")])
def test_a_listener_that_cannot_bind_names_the_operators_address(tmp_path, origin, family, host, shown):
    with socket.socket(family) as busy:
        busy.bind((host, 0))
        busy.listen()
        port = busy.getsockname()[1]
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        r = run_fails("run", "--upstream", origin.url, "--listen", listen, "--confdir", str(tmp_path / "conf"))
    assert f"failed to listen on {shown}:{port}" in r.stderr and "address already in use" in r.stderr
    assert origin.url in r.stderr  # the operator's upstream, unmasked too


def test_visitor_addresses_stay_masked_in_verbose_output(tmp_path, origin, ca, root):
    issued = ca.issue(SITE)
    issued.write(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    p = start_proxy(tmp_path / "p", origin.url, "--cert", str(tmp_path / "fullchain.pem"), "--key",
                    str(tmp_path / "privkey.pem"), "-v")
    try:
        ctx = ssl.create_default_context(cafile=str(root))
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=5, source_address=("127.9.8.7", 0))
        with ctx.wrap_socket(raw, server_hostname=SITE) as tls:
            tls.sendall(b"GET /?ip=127.9.8.7 HTTP/1.1\r\nHost: " + SITE.encode() + b"\r\nConnection: close\r\n\r\n")
            while tls.recv(65536):
                pass
        p.proc.send_signal(signal.SIGHUP)
        wait_stderr(p, "SIGHUP")
    finally:
        p.stop()
    assert "127.9.8.7" not in p.stderr()
    assert f"serving https://127.0.0.1:{p.port}/" in p.stderr()
