"""Certificates from an ACME CA (RFC 8555: Let's Encrypt, a private CA, Debian's pebble in the tests), through
certbot's `acme` library: the account, the orders, TLS-ALPN-01 (RFC 8737) and HTTP-01 answered by privproxy
itself, renewal at two thirds of the lifetime with backoff (C1).

Plain Python and blocking (the library speaks HTTP through `requests`): privproxy.mitm.acme runs `Manager.attempt`
on a worker thread and answers the CA's validation requests on the proxy's own listeners through a `Responder`.
"""

from __future__ import annotations

import datetime
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privproxy import __version__
from privproxy.acme_state import (CHALLENGE_TYPES, FIRST_RETRY, Attempts, Store, challenge_order, due,
                                  private_key_pem)

USER_AGENT = f"privproxy/{__version__} acme-python"
ACME_TLS_ALPN = "acme-tls/1"
ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1, id-pe-acmeIdentifier
RATE_LIMITS = "https://letsencrypt.org/docs/rate-limits/"
ORDER_SECONDS = 120.0  # from the first answer to the certificate; Let's Encrypt takes a few seconds
NONCE_RETRIES = 6  # badNonce answers in a row before a request fails (pebble rejects 5% of nonces by default)
T = TypeVar("T")


class Network(client.ClientNetwork):
    """certbot's ClientNetwork, sending a request the CA answered badNonce again with a new nonce (RFC 8555 §6.5)
    up to NONCE_RETRIES times: the library retries once, so one order of ~15 requests failed about once in 25
    against pebble's default 5% rejection, and a failed order waits out the backoff (minutes). The library drops
    the nonce an error answer carries, so each retry fetches one (a HEAD request more)."""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for _ in range(NONCE_RETRIES):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce":
                    raise
        return self._post_once(*args, **kwargs)


# --- TLS-ALPN-01 (RFC 8737): certbot's `acme` no longer ships it; its challenge registry takes it as one more type ----


class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The answer to a TLS-ALPN-01 challenge: an empty object, as for HTTP-01 (the key authorization is proven
    in the TLS handshake)."""

    typ = "tls-alpn-01"


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: jose.JWK, **unused: Any) -> str:
        return self.key_authorization(account_key)


def challenge_certificate(domain: str, key_authorization: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The self-signed certificate a TLS-ALPN-01 validation must get (RFC 8737 §3): the name as its only
    subjectAltName, and the SHA-256 of the key authorization in a critical acmeIdentifier extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "privproxy ACME challenge")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


# --- Answering the CA ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One challenge privproxy answers: HTTP-01 at /.well-known/acme-challenge/TOKEN on the name's port 80,
    TLS-ALPN-01 in a handshake for the name with ALPN acme-tls/1 on its port 443."""

    domain: str
    kind: str
    token: str
    key_authorization: str


class Responder(Protocol):
    """Where the proxy learns which challenges to answer (published before the CA is told to validate)."""

    def publish(self, answer: Answer) -> None: ...

    def withdraw(self, answer: Answer) -> None: ...


class AcmeError(Exception):
    """An order that failed: what happened and what to do, for the operator."""

    def __init__(self, message: str, challenge: str = "") -> None:
        super().__init__(message)
        self.challenge = challenge


HINTS = {
    "tls-alpn-01": "the CA connects to port 443 of the name with ALPN acme-tls/1: make sure the name resolves to "
                   "this proxy and port 443 reaches a privproxy --listen directly (TLS passthrough; a load balancer "
                   "that terminates TLS breaks TLS-ALPN-01 — use --acme-challenge http-01)",
    "http-01": "the CA fetches http://NAME/.well-known/acme-challenge/TOKEN on port 80: make sure the name resolves "
               "to this proxy and port 80 reaches a privproxy --listen (e.g. --listen 0.0.0.0:80), and that "
               "filters.yaml's https.exempt_paths keeps /.well-known/acme-challenge/",
}


def describe(e: BaseException, directory: str, email: str, challenge: str = "") -> str:
    """An ACME failure as the operator should read it: what the CA or the network said, then what to do."""
    if isinstance(e, AcmeError):
        return str(e)
    if isinstance(e, requests.exceptions.SSLError):
        return (f"cannot verify the TLS certificate of {directory} ({_short(e)}) — for a private CA pass its "
                "certificate with --acme-ca FILE")
    if isinstance(e, requests.exceptions.RequestException):
        return (f"cannot reach {directory} ({_short(e)}) — check --acme-directory and that this host may open "
                "outbound HTTPS connections to it")
    if isinstance(e, errors.ValidationError):
        parts = []
        for authzr in e.failed_authzrs:
            for ch in authzr.body.challenges:
                if ch.error is not None:
                    kind = ch.chall.typ if isinstance(ch.chall.typ, str) else challenge
                    parts.append(f"the CA could not validate {authzr.body.identifier.value} by {kind}: "
                                 f"{ch.error.detail or ch.error.typ} — {HINTS.get(kind, '')}".rstrip(" —"))
        return "; ".join(parts) or "the CA refused the authorization"
    if isinstance(e, errors.TimeoutError):
        return (f"the CA did not finish the order within {ORDER_SECONDS:.0f} s — it may be slow or down; "
                "privproxy tries again later")
    if isinstance(e, errors.IssuanceError):
        e = e.error
    if isinstance(e, messages.Error):
        detail = e.detail or e.description or e.typ
        if e.code == "rateLimited":
            return (f"the CA's rate limit: {detail} — privproxy tries again later; see {RATE_LIMITS} (several "
                    "instances: share --acme-dir)")
        if e.code in ("invalidContact", "unsupportedContact"):
            return f"the CA refuses the contact {email}: {detail} — pass a working --acme-email"
        if e.code == "rejectedIdentifier":
            return f"the CA will not issue for this name: {detail} — check the --acme names"
        if e.code == "externalAccountRequired":
            return (f"the CA requires external account binding: {detail} — privproxy does not do it; use a CA "
                    "that does not, or get the certificate with another client and pass it with --cert")
        return f"the CA answered {e.code or e.typ}: {detail}"
    if isinstance(e, errors.Error):
        return f"ACME error: {e}"
    return f"ACME client error ({type(e).__name__}: {_short(e)})"


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- One order ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Obtained:
    domain: str
    serial: int
    not_after: float
    challenge: str  # the type the CA validated ("" when it reused an authorization)
    seconds: float


class Issuer:
    """Orders a certificate for one name at a time from one ACME directory, with the account kept in `store`."""

    def __init__(self, store: Store, email: str, ca_file: str = "", timeout: float = 30.0,
                 order_seconds: float = ORDER_SECONDS) -> None:
        self.store = store
        self.email = email
        self.ca_file = ca_file
        self.timeout = timeout
        self.order_seconds = order_seconds

    def obtain(self, domain: str, prefer: Sequence[str], responder: Responder) -> Obtained:
        """Order, answer, finalize, store: raises AcmeError (with what to do) or a library/network error."""
        start = time.monotonic()
        acme, key = self._session()
        cert_key = ec.generate_private_key(ec.SECP256R1())
        cert_key_pem = private_key_pem(cert_key)
        csr = crypto_util.make_csr(cert_key_pem, [domain])
        orderr = self._as_account(acme, lambda: acme.new_order(csr))
        for stale in self.store.challenges_for(domain, "tls-alpn-01") + self.store.challenges_for(domain, "http-01"):
            self.store.withdraw_challenge(stale["token"])  # left by an order that was cut off: we hold the turn
        published: list[Answer] = []
        used = ""
        try:
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue  # the CA reused a recent validation
                challb = _pick(authzr.body.challenges, prefer)
                if challb is None:
                    offered = ", ".join(str(c.chall.typ if isinstance(c.chall.typ, str) else c.to_partial_json()
                                            .get("type")) for c in authzr.body.challenges)
                    raise AcmeError(f"the CA offers {offered} for {domain}, none of {', '.join(prefer)} — privproxy "
                                    "answers tls-alpn-01 and http-01 (check --acme-challenge)")
                used = challb.chall.typ
                response, key_authorization = challb.response_and_validation(key)
                answer = Answer(authzr.body.identifier.value, used, challb.chall.encode("token"), key_authorization)
                self.store.publish_challenge(answer.domain, answer.kind, answer.token, answer.key_authorization)
                responder.publish(answer)
                published.append(answer)
                acme.answer_challenge(challb, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.order_seconds)
            orderr = acme.poll_and_finalize(orderr, deadline)
        except errors.ValidationError as e:
            raise AcmeError(describe(e, self.store.directory, self.email, used), used) from None
        except (errors.Error, messages.Error, requests.exceptions.RequestException) as e:
            raise AcmeError(describe(e, self.store.directory, self.email, used), used) from None
        finally:
            for answer in published:
                responder.withdraw(answer)
                self.store.withdraw_challenge(answer.token)
        chain = orderr.fullchain_pem.encode()
        leaf = x509.load_pem_x509_certificates(chain)[0]
        if leaf.public_key() != cert_key.public_key():
            raise AcmeError(f"the CA sent a certificate for another key for {domain}", used)
        self.store.write_certificate(domain, cert_key_pem, chain)
        return Obtained(domain, leaf.serial_number, leaf.not_valid_after_utc.timestamp(), used,
                        time.monotonic() - start)

    # the account
    def _session(self) -> tuple[client.ClientV2, jose.JWK]:
        key, new_key = self._account_key()
        net = Network(key, alg=jose.ES256, verify_ssl=self.ca_file or True,  # type: ignore[arg-type]
                      user_agent=USER_AGENT, timeout=int(self.timeout))
        try:
            directory = client.ClientV2.get_directory(self.store.directory, net)
        except (requests.exceptions.RequestException, errors.Error, messages.Error, ValueError) as e:
            raise AcmeError(describe(e, self.store.directory, self.email)) from None
        acme = client.ClientV2(directory, net)
        stored = None if new_key else self.store.account()
        if stored is None:
            self._register(acme)
        else:
            net.account = messages.RegistrationResource(uri=stored["uri"], body=self._registration())
            if stored.get("email") != self.email:
                self._as_account(acme, lambda: acme.update_registration(net.account, self._registration()))
                self.store.write_account(stored["uri"], self.email)
        return acme, key

    def _registration(self) -> messages.Registration:
        return messages.Registration.from_data(email=self.email)

    def _register(self, acme: client.ClientV2) -> None:
        new = messages.NewRegistration.from_data(email=self.email, terms_of_service_agreed=True)
        try:
            regr = acme.new_account(new)
        except errors.ConflictError as e:  # the CA knows this key already
            regr = messages.RegistrationResource(uri=e.location, body=self._registration())
            acme.net.account = regr
        except (errors.Error, messages.Error, requests.exceptions.RequestException) as e:
            raise AcmeError(describe(e, self.store.directory, self.email)) from None
        self.store.write_account(regr.uri, self.email)

    def _as_account(self, acme: client.ClientV2, call: Callable[[], T]) -> T:
        """`call`, registering again once when the CA no longer knows the stored account (a test CA restarted, an
        account deactivated elsewhere)."""
        try:
            return call()
        except messages.Error as e:
            if e.code != "accountDoesNotExist" or acme.net.account is None:
                raise AcmeError(describe(e, self.store.directory, self.email)) from None
        acme.net.account = None
        self._register(acme)
        try:
            return call()
        except (errors.Error, messages.Error, requests.exceptions.RequestException) as e:
            raise AcmeError(describe(e, self.store.directory, self.email)) from None

    def _account_key(self) -> tuple[jose.JWK, bool]:
        """The account key, made on first use (True: new, so any stored registration belongs to another key)."""
        with self.store.turn("account", wait=30.0) as mine:
            if not mine:
                raise AcmeError(f"{self.store.base}: another instance has held the account lock for 30 s — "
                                "privproxy tries again later")
            pem = self.store.account_key_pem()
            new = pem is None
            if pem is None:
                pem = private_key_pem(ec.generate_private_key(ec.SECP256R1()))
                self.store.write_account_key(pem)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise AcmeError(f"{self.store.account_key_path}: not a readable private key — move it away to register "
                            "a new account (the certificates stay valid)") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AcmeError(f"{self.store.account_key_path}: not an ECDSA P-256 key — move it away to register a "
                            "new account")
        return jose.JWKEC(key=key), new


def _pick(offered: Sequence[messages.ChallengeBody], prefer: Sequence[str]) -> messages.ChallengeBody | None:
    by_type = {c.chall.typ: c for c in offered if isinstance(c.chall.typ, str)}
    return next((by_type[t] for t in prefer if t in by_type), None)


# --- When to order: the schedule over every name ---------------------------------------------------------------------


class Result(StrEnum):
    ISSUED = "issued"  # a name's first certificate (or one replacing an unreadable file)
    RENEWED = "renewed"
    FAILED = "failed"
    BUSY = "busy"  # another instance sharing --acme-dir is ordering this name
    NOT_DUE = "not_due"  # another instance renewed it meanwhile


@dataclass(frozen=True, slots=True)
class Attempt:
    domain: str
    result: Result
    obtained: Obtained | None = None
    error: str = ""
    attempts: Attempts = Attempts()  # the backoff after this attempt


class Manager:
    """Every --acme name: when it is due, and one attempt at a time (the caller runs `attempt` on a thread)."""

    def __init__(self, store: Store, issuer: Issuer, domains: Sequence[str], allowed: Sequence[str] = CHALLENGE_TYPES,
                 listen_ports: Sequence[int] = (), retry: float = FIRST_RETRY) -> None:
        self.store = store
        self.issuer = issuer
        self.domains = tuple(domains)
        self.allowed = tuple(allowed)
        self.listen_ports = tuple(listen_ports)
        self.retry = retry

    def due(self, domain: str) -> float:
        return due(self.store.read_certificate(domain), self.store.attempts(domain))

    def next_due(self) -> tuple[str, float] | None:
        times = [(d, self.due(d)) for d in self.domains]
        return min(times, key=lambda t: t[1]) if times else None

    def attempt(self, domain: str, responder: Responder, now: float | None = None) -> Attempt:
        """Order `domain` if it is (still) due and no other instance is ordering it; the backoff is written."""
        with self.store.turn(domain) as mine:
            if not mine:
                return Attempt(domain, Result.BUSY)
            now = time.time() if now is None else now
            stored = self.store.read_certificate(domain)
            attempts = self.store.attempts(domain)
            if due(stored, attempts) > now:
                return Attempt(domain, Result.NOT_DUE, attempts=attempts)
            prefer = challenge_order(self.allowed, self.listen_ports, attempts.challenge)
            try:
                obtained = self.issuer.obtain(domain, prefer, responder)
            except Exception as e:  # noqa: BLE001 - any failure is one more failed attempt, retried with backoff
                message = describe(e, self.store.directory, self.issuer.email)
                used = e.challenge if isinstance(e, AcmeError) else ""
                after = attempts.after_failure(time.time(), message, used or attempts.challenge, self.retry)
                self.store.write_attempts(domain, after)
                return Attempt(domain, Result.FAILED, error=message, attempts=after)
            self.store.write_attempts(domain, Attempts())
            result = Result.ISSUED if stored is None else Result.RENEWED
            return Attempt(domain, result, obtained, attempts=Attempts())


__all__ = ["ACME_TLS_ALPN", "AcmeError", "Answer", "Attempt", "Issuer", "Manager", "Obtained", "Responder", "Result",
           "TLSALPN01", "challenge_certificate", "describe"]
