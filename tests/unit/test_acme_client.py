"""The ACME client's parts that need no CA (C1): TLS-ALPN-01 as certbot's `acme` library parses and answers it, the
challenge certificate of RFC 8737, failures told with what to do, and the Manager's attempts (due, busy, backoff).
The orders themselves run against Debian's pebble in tests/e2e/test_acme.py."""

from __future__ import annotations

import hashlib
import time

import josepy as jose
import pytest
import requests
from acme import challenges, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privproxy import acme_client, acme_state
from privproxy.acme_client import TLSALPN01, Answer, Manager, Obtained, Result
from privproxy.acme_state import Attempts, Store
from tests.certs import Authority

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


@pytest.fixture(scope="module")
def account_key() -> jose.JWKEC:
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def test_tls_alpn_01_is_parsed_and_answered_like_the_librarys_own_challenges(account_key):
    body = messages.ChallengeBody.from_json({"type": "tls-alpn-01", "url": "https://ca.example/chall/1",
                                             "status": "pending", "token": TOKEN})
    assert isinstance(body.chall, TLSALPN01) and body.chall.typ == "tls-alpn-01"
    response, key_authorization = body.response_and_validation(account_key)
    assert key_authorization == body.chall.key_authorization(account_key)
    assert key_authorization.startswith(TOKEN + ".")
    assert response.to_partial_json() == {}  # RFC 8555 §7.5.1: the client POSTs an empty object
    http = messages.ChallengeBody.from_json({"type": "http-01", "url": "u", "status": "pending", "token": TOKEN})
    assert isinstance(http.chall, challenges.HTTP01)


def test_the_challenge_certificate_is_rfc_8737s():
    cert, key = acme_client.challenge_certificate("shop.example", f"{TOKEN}.thumbprint")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["shop.example"]  # the name, and only it
    ext = cert.extensions.get_extension_for_oid(acme_client.ACME_IDENTIFIER)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(f"{TOKEN}.thumbprint".encode()).digest()  # DER OCTET STRING
    assert cert.issuer == cert.subject and cert.public_key() == key.public_key()


def problem(code: str, detail: str) -> messages.Error:
    return messages.Error(typ=messages.ERROR_PREFIX + code, detail=detail)


def failed_authorization(kind: str, detail: str) -> errors.ValidationError:
    chall = messages.ChallengeBody.from_json({"type": kind, "url": "u", "status": "invalid", "token": TOKEN,
                                              "error": {"type": messages.ERROR_PREFIX + "connection",
                                                        "detail": detail}})
    authz = messages.Authorization(identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="shop.example"),
                                   challenges=[chall], status=messages.STATUS_INVALID)
    return errors.ValidationError([messages.AuthorizationResource(body=authz, uri="https://ca.example/authz/1")])


D = acme_state.LETS_ENCRYPT


@pytest.mark.parametrize("error, says", [
    (requests.exceptions.SSLError("certificate verify failed"), "pass its certificate with --acme-ca FILE"),
    (requests.exceptions.ConnectionError("refused"), "check --acme-directory"),
    (problem("rateLimited", "too many certificates"), "https://letsencrypt.org/docs/rate-limits/"),
    (problem("invalidContact", "bad domain"), "pass a working --acme-email"),
    (problem("rejectedIdentifier", "forbidden"), "check the --acme names"),
    (problem("externalAccountRequired", "eab"), "privproxy does not do it"),
    (errors.IssuanceError(problem("badCSR", "weak key")), "the CA answered badCSR: weak key"),
    (failed_authorization("tls-alpn-01", "Connection refused"), "port 443 reaches a privproxy --listen"),
    (failed_authorization("http-01", "404"), "port 80 reaches a privproxy --listen"),
    (errors.TimeoutError(), "did not finish the order within"),
    (RuntimeError("surprise"), "ACME client error (RuntimeError: surprise)"),
])
def test_failures_are_told_with_what_to_do(error, says):
    assert says in acme_client.describe(error, D, "ops@shop.example")


def test_a_failed_validation_names_the_name_the_challenge_and_the_cas_words():
    text = acme_client.describe(failed_authorization("http-01", "Invalid response from http://shop.example/"), D, "")
    assert text.startswith("the CA could not validate shop.example by http-01: Invalid response from")


class FakeIssuer:
    """Stands in for acme_client.Issuer: writes a certificate as the real one does, or fails."""

    email = "ops@shop.example"

    def __init__(self, store: Store, fail: Exception | None = None, days: int = 90) -> None:
        self.store, self.fail, self.days, self.asked = store, fail, days, []

    def obtain(self, domain, prefer, responder) -> Obtained:
        self.asked.append((domain, tuple(prefer)))
        if self.fail is not None:
            raise self.fail
        issued = Authority().issue(domain, days=self.days)
        self.store.write_certificate(domain, issued.privkey(), issued.fullchain())
        return Obtained(domain, issued.serial, issued.cert.not_valid_after_utc.timestamp(), prefer[0], 0.1)


class Quiet:
    def publish(self, answer: Answer) -> None: ...

    def withdraw(self, answer: Answer) -> None: ...


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path, D)
    s.prepare()
    return s


def test_a_name_is_issued_then_not_due_then_renewed(store):
    issuer = FakeIssuer(store)
    m = Manager(store, issuer, ["shop.example"], listen_ports=(443, 80))  # type: ignore[arg-type]
    assert m.next_due() == ("shop.example", 0.0)
    first = m.attempt("shop.example", Quiet())
    assert first.result == Result.ISSUED and issuer.asked == [("shop.example", ("tls-alpn-01", "http-01"))]
    assert m.attempt("shop.example", Quiet()).result == Result.NOT_DUE  # e.g. another instance renewed it
    later = m.due("shop.example") + 1
    assert m.attempt("shop.example", Quiet(), now=later).result == Result.RENEWED


def test_a_failure_is_backed_off_on_disk_and_the_other_challenge_is_tried_next(store):
    issuer = FakeIssuer(store, fail=acme_client.AcmeError("the CA could not validate shop.example", "tls-alpn-01"))
    m = Manager(store, issuer, ["shop.example"], retry=60)  # type: ignore[arg-type]
    before = time.time()
    a = m.attempt("shop.example", Quiet())
    assert a.result == Result.FAILED and a.error == "the CA could not validate shop.example"
    assert a.attempts.failures == 1 and before + 54 <= a.attempts.next_attempt <= time.time() + 66
    assert store.attempts("shop.example") == a.attempts  # kept for the next process too
    assert m.attempt("shop.example", Quiet()).result == Result.NOT_DUE  # backed off
    issuer.fail = requests.exceptions.ConnectionError("refused")
    b = m.attempt("shop.example", Quiet(), now=a.attempts.next_attempt)
    assert b.attempts.failures == 2 and "check --acme-directory" in b.error
    assert issuer.asked[-1][1] == ("http-01", "tls-alpn-01")  # TLS-ALPN-01 failed last: HTTP-01 first
    issuer.fail = None
    ok = m.attempt("shop.example", Quiet(), now=b.attempts.next_attempt)
    assert ok.result == Result.ISSUED and store.attempts("shop.example") == Attempts()


def test_a_name_another_instance_is_ordering_is_left_to_it(store):
    m = Manager(store, FakeIssuer(store), ["shop.example", "blog.example"])  # type: ignore[arg-type]
    other = Store(store.root, D)  # another process sharing --acme-dir
    with other.turn("shop.example"):
        assert m.attempt("shop.example", Quiet()).result == Result.BUSY
        assert m.attempt("blog.example", Quiet()).result == Result.ISSUED
    assert m.next_due() == ("shop.example", 0.0)
