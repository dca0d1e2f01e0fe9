"""`privproxy run --acme` against Debian's pebble with real validation (C1): pebble-challtestsrv resolves the names
to 127.0.0.1 and pebble connects to the proxy's own listener for TLS-ALPN-01 and HTTP-01. Two names, each served
by SNI with a chain a client trusting only pebble's root accepts; account and certificates kept with mode 0600 and
reused after a restart; renewal at two thirds of a short lifetime while serving; a failure backed off and
recovered; validations reaching another instance that shares --acme-dir; the mistakes an operator can make."""

from __future__ import annotations

import socket
import ssl
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.helpers import metric, Origin, free_port, privproxy_exe, start_proxy
from tests.pebble import Pebble

pytestmark = pytest.mark.e2e
NAMES = ("shop.example", "blog.example")


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture
def pebbles(tmp_path):
    started: list[Pebble] = []

    def start(port: int, **kwargs) -> Pebble:
        p = Pebble(tmp_path / f"pebble{len(started)}", port, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def proxies():
    started = []

    def start(*args, **kwargs):
        p = start_proxy(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def acme_args(pebble: Pebble, port: int, *names: str, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["--listen", f"127.0.0.1:{port}", "--acme-email", "ops@shop.example", "--acme-directory",
            pebble.directory, "--acme-ca", str(pebble.ca_file), *extra]
    for n in names:
        args += ["--acme", n]
    return args


def served(port: int, root: Path, sni: str) -> x509.Certificate:
    """The certificate a new handshake for `sni` gets, verified by a client trusting only `root` (pebble's): the
    intermediate came along and the name matches."""
    ctx = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def wait_served(proxy, pebble: Pebble, sni: str, timeout: float = 30.0, not_serial: int | None = None
                ) -> tuple[x509.Certificate, float]:
    """The first pebble-issued certificate (not `not_serial`) a handshake for `sni` gets, and how long it took; on
    time-out the proxy's and pebble's last words, to tell a slow machine from a failed order."""
    start = time.monotonic()
    while True:
        try:
            cert = served(proxy.port, pebble.root, sni)
            if cert.serial_number != not_serial:
                return cert, time.monotonic() - start
        except (ssl.SSLError, OSError):
            pass  # the local trial CA's certificate until pebble's arrives
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no certificate from pebble for {sni} within {timeout} s\n--- proxy:\n"
                                 f"{proxy.stderr()[-3000:]}\n--- pebble:\n{pebble.log()[-3000:]}")
        time.sleep(0.05)


def dns_names(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def state_dir(p, pebble: Pebble) -> Path:
    return p.confdir / "acme" / f"localhost-{pebble.port}-dir"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("challenge", ["tls-alpn-01", "http-01"])
def test_two_names_obtained_by_real_validation_and_served_by_sni(tmp_path, origin, pebbles, proxies, challenge):
    port = free_port()
    pebble = pebbles(port)
    started = time.monotonic()
    p = proxies(tmp_path / "proxy", origin.url, *acme_args(pebble, port, *NAMES, extra=("--acme-challenge", challenge)),
                metrics=True)
    certs = {}
    for name in NAMES:
        certs[name], _ = wait_served(p, pebble, name)
    print(f"\n{challenge}: both names served {time.monotonic() - started:.2f} s after start")
    for name, cert in certs.items():
        assert dns_names(cert) == [name]  # one certificate per name, each chosen by SNI
        assert "Pebble Intermediate" in cert.issuer.rfc4514_string()
    assert certs[NAMES[0]].serial_number != certs[NAMES[1]].serial_number
    # pebble validated each name itself (two of three perspectives suffice), by the chosen challenge
    assert len(pebble.validations()) == 2 and "ALWAYS" not in pebble.log().upper().replace("PEBBLE_VA_NOSLEEP", "")
    if challenge == "http-01":  # the validations were answered by privproxy, recorded, never forwarded
        records = [r for r in p.log_records(wait_for=2) if r["outcome"] == "acme_challenge"]
        assert len(records) >= 2 and all(r["status"] == 200 and r["scheme"] == "http" for r in records)
        assert not any("acme-challenge" in r.path for r in origin.requests)
    assert metric(p, "privproxy_acme_orders_total", result="success") == 2
    assert metric(p, "privproxy_acme_consecutive_failures", certificate=NAMES[0]) == 0
    for name, cert in certs.items():
        assert metric(p, "privproxy_certificate_expiry_timestamp_seconds", certificate=name) == \
            cert.not_valid_after_utc.timestamp()
    # the state: private files 0600 in 0700 directories, the challenges withdrawn
    d = state_dir(p, pebble)
    files = [d / "account.key", d / "account.json", *(d / "certificates" / f"{n}.pem" for n in NAMES)]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert all(mode(x) == 0o700 for x in (p.confdir / "acme", d, d / "certificates", d / "challenges"))
    assert list((d / "challenges").iterdir()) == []
    # a visitor's request is served with the ACME certificate
    ctx = ssl.create_default_context(cafile=str(pebble.root))
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=NAMES[0]) as tls:
        tls.sendall(f"GET /page HTTP/1.1\r\nHost: {NAMES[0]}\r\nConnection: close\r\n\r\n".encode())
        assert tls.recv(100).startswith(b"HTTP/1.1 200")


def test_a_restart_reuses_the_account_and_the_certificate(tmp_path, origin, pebbles, proxies):
    port = free_port()
    pebble = pebbles(port)
    args = acme_args(pebble, port, NAMES[0])
    first = proxies(tmp_path / "proxy", origin.url, *args, metrics=True)
    cert, issuance = wait_served(first, pebble, NAMES[0])
    d = state_dir(first, pebble)
    account = (d / "account.key").read_bytes(), (d / "account.json").read_bytes()
    first.stop()
    (tmp_path / "proxy" / "ready.json").unlink()  # the same directories: --confdir holds the ACME state
    second = proxies(tmp_path / "proxy", origin.url, *args, metrics=True)
    # the very first handshake after the restart gets the stored certificate; nothing was ordered
    assert served(second.port, pebble.root, NAMES[0]).serial_number == cert.serial_number
    assert metric(second, "privproxy_acme_orders_total", result="success") == 0
    assert ((d / "account.key").read_bytes(), (d / "account.json").read_bytes()) == account
    assert len(pebble.validations()) == 1
    assert "certificate in" in second.stderr() and "renewed from" in second.stderr()
    print(f"\nissuance {issuance:.2f} s; restart served the stored certificate at once")


def test_a_ca_that_forgot_the_account_gets_it_registered_again(tmp_path, origin, pebbles, proxies):
    port = free_port()
    pebble = pebbles(port)
    args = acme_args(pebble, port, NAMES[0])
    first = proxies(tmp_path / "proxy", origin.url, *args)
    wait_served(first, pebble, NAMES[0])
    first.stop()
    d = state_dir(first, pebble)
    key, account = (d / "account.key").read_bytes(), (d / "account.json").read_text()
    (d / "certificates" / f"{NAMES[0]}.pem").unlink()
    pebble.stop()
    pebble.start()  # a new pebble on the same address: no accounts, a new root
    (tmp_path / "proxy" / "ready.json").unlink()
    second = proxies(tmp_path / "proxy", origin.url, *args, metrics=True)
    wait_served(second, pebble, NAMES[0])
    assert (d / "account.key").read_bytes() == key  # the same key, registered again: a new account URL
    assert (d / "account.json").read_text() != account
    assert metric(second, "privproxy_acme_orders_total", result="failure") == 0


def test_renewed_at_two_thirds_of_its_lifetime_while_serving(tmp_path, origin, pebbles, proxies):
    lifetime = 24  # seconds: pebble's certificateValidityPeriod
    port = free_port()
    pebble = pebbles(port, validity=lifetime)
    p = proxies(tmp_path / "proxy", origin.url, *acme_args(pebble, port, NAMES[0]), metrics=True)
    first, _ = wait_served(p, pebble, NAMES[0])
    renewed, waited = wait_served(p, pebble, NAMES[0], timeout=lifetime, not_serial=first.serial_number)
    seen = time.time()
    born = first.not_valid_before_utc.timestamp()
    life = first.not_valid_after_utc.timestamp() - born
    # renewed once two thirds of the lifetime had passed (the order takes ~2 s), before the old one expired
    assert born + life * 2 / 3 <= seen <= first.not_valid_after_utc.timestamp()
    assert dns_names(renewed) == [NAMES[0]] and renewed.not_valid_before_utc >= first.not_valid_before_utc
    assert metric(p, "privproxy_acme_orders_total", result="success") == 2
    assert "certificate renewed" in p.stderr()
    print(f"\nrenewal served {seen - born:.1f} s into a {life:.0f} s lifetime (due at {life * 2 / 3:.1f} s)")


def test_a_failed_order_is_retried_with_backoff_and_recovers(tmp_path, origin, pebbles, proxies):
    port = free_port()
    pebble = pebbles(port, start=False)  # the CA is down when the proxy starts
    p = proxies(tmp_path / "proxy", origin.url, *acme_args(pebble, port, NAMES[0], extra=("--acme-retry", "2")),
                metrics=True)
    deadline = time.monotonic() + 10
    while "cannot reach" not in p.stderr():
        assert time.monotonic() < deadline, p.stderr()
        time.sleep(0.05)
    assert "check --acme-directory" in p.stderr() and "next attempt" in p.stderr()
    assert metric(p, "privproxy_acme_orders_total", result="failure") >= 1
    attempts = state_dir(p, pebble) / "certificates" / f"{NAMES[0]}.json"
    assert mode(attempts) == 0o600 and '"failures": ' in attempts.read_text()
    failed_at = time.monotonic()
    pebble.start()  # the CA comes back: a later attempt (after 2 s, 4 s, ...) gets the certificate
    cert, waited = wait_served(p, pebble, NAMES[0], timeout=20)
    assert dns_names(cert) == [NAMES[0]] and p.proc.poll() is None  # served all along, never restarted
    assert not attempts.exists()  # a success clears the backoff
    assert metric(p, "privproxy_acme_consecutive_failures", certificate=NAMES[0]) == 0
    assert metric(p, "privproxy_acme_orders_total", result="success") == 1
    print(f"\nrecovered {time.monotonic() - failed_at:.2f} s after the first failure (backoff from 2 s)")


def test_without_acme_ca_a_private_directory_is_refused_with_the_fix(tmp_path, origin, pebbles, proxies):
    port = free_port()
    pebble = pebbles(port)
    p = proxies(tmp_path / "proxy", origin.url, "--listen", f"127.0.0.1:{port}", "--acme", NAMES[0],
                "--acme-email", "ops@shop.example", "--acme-directory", pebble.directory)
    deadline = time.monotonic() + 10
    while "--acme-ca FILE" not in p.stderr():
        assert time.monotonic() < deadline, p.stderr()
        time.sleep(0.05)
    assert "cannot verify the TLS certificate" in p.stderr() and p.proc.poll() is None  # still serving


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_a_validation_reaching_another_instance_sharing_the_state_is_answered(tmp_path, origin, pebbles, proxies,
                                                                              challenge):
    """Behind a load balancer the CA may reach any instance: B orders, A (where pebble connects) answers from the
    challenges B published in the shared --acme-dir."""
    port = free_port()
    pebble = pebbles(port)
    shared = str(tmp_path / "shared-acme")
    common = ["--acme-email", "ops@shop.example", "--acme-directory", pebble.directory, "--acme-ca",
              str(pebble.ca_file), "--acme-dir", shared, "--acme-challenge", challenge]
    a = proxies(tmp_path / "a", origin.url, "--listen", f"127.0.0.1:{port}", "--acme", NAMES[1], *common,
                metrics=True)
    wait_served(a, pebble, NAMES[1])  # A has its own name; pebble validated it at A
    b = proxies(tmp_path / "b", origin.url, "--acme", NAMES[0], *common, metrics=True)  # B: no validation port
    cert, _ = wait_served(b, pebble, NAMES[0])
    assert dns_names(cert) == [NAMES[0]] and len(pebble.validations()) == 2
    assert metric(b, "privproxy_acme_orders_total", result="success") == 1
    # one state for both: the account B used is the one A registered
    assert len(list(Path(shared).glob("*/account.json"))) == 1
    assert metric(b, "privproxy_acme_orders_total", result="failure") == 0
    if challenge == "http-01":  # A answered B's validation: A's log has it, for B's name
        answered = [r for r in a.log_records(wait_for=2) if r["outcome"] == "acme_challenge"]
        assert {r["host"].split(":")[0] for r in answered} == set(NAMES)


@pytest.mark.parametrize("args, expected", [
    (["--acme", "shop.example"], "--acme needs --acme-email ADDR"),
    (["--acme", "*.shop.example", "--acme-email", "ops@shop.example"], "a wildcard needs the DNS-01 challenge"),
    (["--acme", "127.0.0.1", "--acme-email", "ops@shop.example"], "an address, not a DNS name"),
    (["--acme", "shop", "--acme-email", "ops@shop.example"], "not a public DNS name"),
    (["--acme", "shop.example", "--acme-email", "ops"], "not an e-mail address"),
    (["--acme", "shop.example", "--acme-email", "ops@shop.example", "--acme-directory", "http://ca.example/dir"],
     "an ACME directory is an https:// URL"),
    (["--acme", "shop.example", "--acme-email", "ops@shop.example", "--acme-ca", "/nonexistent/ca.pem"],
     "--acme-ca /nonexistent/ca.pem: cannot read it"),
    (["--acme-email", "ops@shop.example"], "--acme-email without --acme DOMAIN"),
    (["--acme", "shop.example", "--acme-email", "ops@shop.example", "--acme-challenge", "dns-01"], "invalid choice"),
])
def test_mistakes_are_refused_before_anything_listens_with_what_to_do(tmp_path, origin, args, expected):
    import subprocess

    r = subprocess.run([*privproxy_exe(), "run", "--upstream", origin.url, "--listen", "127.0.0.1:0", "--confdir",
                        str(tmp_path / "conf"), *args], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and expected in r.stderr, r.stderr


def test_one_source_per_name_and_a_state_directory_that_cannot_be_written(tmp_path, origin):
    import subprocess

    from tests.certs import Authority

    issued = Authority().issue("shop.example")
    issued.write(tmp_path / "shop.pem")
    base = [*privproxy_exe(), "run", "--upstream", origin.url, "--listen", "127.0.0.1:0", "--confdir",
            str(tmp_path / "conf"), "--acme", "shop.example", "--acme-email", "ops@shop.example"]
    r = subprocess.run([*base, "--cert", f"shop.example={tmp_path / 'shop.pem'}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "choose one source for the name" in r.stderr, r.stderr
    (tmp_path / "file").write_text("not a directory")
    r = subprocess.run([*base, "--acme-dir", str(tmp_path / "file" / "acme")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "give privproxy's user a writable --acme-dir" in r.stderr, r.stderr


def test_rejected_nonces_are_retried_within_the_order(tmp_path, origin, pebbles, proxies):
    """A CA may answer any request badNonce (RFC 8555 §6.5; pebble does at a set rate): the request is sent again
    with the fresh nonce, and the order goes on instead of failing into minutes of backoff."""
    port = free_port()
    pebble = pebbles(port, env={"PEBBLE_WFE_NONCEREJECT": "25"})
    p = proxies(tmp_path / "proxy", origin.url, *acme_args(pebble, port, *NAMES), metrics=True)
    for name in NAMES:
        wait_served(p, pebble, name)
    assert metric(p, "privproxy_acme_orders_total", result="success") == 2
    assert metric(p, "privproxy_acme_orders_total", result="failure") == 0
    print(f"\n{pebble.log().count('badNonce')} nonces rejected")
