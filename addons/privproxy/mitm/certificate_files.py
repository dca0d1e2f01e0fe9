"""The operator's certificate files as certbot and cert-manager write them (fullchain.pem + privkey.pem, tls.crt +
tls.key) or as one combined PEM: read, checked (the key's own certificate, valid now when it replaces one), and
stamped, so a rewrite, a rename or a kubelet symlink swap shows as a change (C1)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from privproxy.mitm import internals

KEY_HINT = "certbot: privkey.pem, cert-manager: tls.key"
CERT_HINT = "certbot: fullchain.pem, cert-manager: tls.crt"


class CertificateError(Exception):
    """A certificate or key file that cannot be served; the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One `--cert [DOMAIN=]FILE [--key FILE]`; key "" when the key is in the certificate file. `acme`: the file
    privproxy's ACME client keeps for `--acme DOMAIN` (key and chain in one file), served once it exists."""

    cert: str
    key: str = ""
    domain: str = ""
    acme: bool = False

    @classmethod
    def parse(cls, cert: str, key: str = "") -> Spec:
        domain, sep, path = cert.partition("=")
        if not sep:
            domain, path = "", cert
        return cls(str(Path(path).expanduser()), str(Path(key).expanduser()) if key else "",
                   domain.strip().lower().rstrip("."))

    def paths(self) -> tuple[str, ...]:
        return (self.cert, self.key) if self.key else (self.cert,)

    def __str__(self) -> str:
        if self.acme:
            return f"--acme {self.domain} ({self.cert})"
        named = f"{self.domain}=" if self.domain else ""
        return f"--cert {named}{self.cert}" + (f" --key {self.key}" if self.key else "")


type Stamp = tuple[tuple[int, ...] | None, ...]


def stamp(spec: Spec) -> Stamp:
    """What changes when a file is rewritten, replaced by a rename or swapped under a symlink (stat follows links)."""
    out: list[tuple[int, ...] | None] = []
    for path in spec.paths():
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Served:
    spec: Spec
    cert: x509.Certificate
    key: internals.PrivateKey
    intermediates: tuple[x509.Certificate, ...]
    names: tuple[str, ...]  # DNS names and addresses the certificate is for (lower case)
    stamp: Stamp

    @property
    def expires(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc

    def describe(self) -> str:
        sha = self.cert.fingerprint(hashes.SHA256()).hex()
        return f"serial {self.cert.serial_number:x}, sha256 {sha[:16]}…, expires {self.expires:%Y-%m-%d %H:%M} UTC"

    def covers(self, name: str) -> bool:
        return name in self.names or ("." in name and "*." + name.split(".", 1)[1] in self.names)


def read(spec: Spec, now: datetime.datetime, replacing: bool = False) -> Served:
    """The certificate a Spec names, checked: a leaf whose public key is the key's, and (replacing a served one)
    valid now. Raises CertificateError."""
    before = stamp(spec)  # taken first: a write while reading shows as a change at the next look
    data = _read(spec.cert, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{spec.cert}: no PEM certificate in it (one starts with -----BEGIN CERTIFICATE-----)"
                               f" — pass the certificate with its chain ({CERT_HINT})") from None
    key = _key(spec, _read(spec.key, "private key") if spec.key else data)
    leaf = next((c for c in chain if c.public_key() == key.public_key()), None)
    if leaf is None:
        raise CertificateError(
            f"{spec.key or spec.cert}: this private key does not belong to the certificate in {spec.cert} (their "
            f"public keys differ) — pass the key issued with it ({KEY_HINT}, from the same renewal)")
    if replacing and now > leaf.not_valid_after_utc:
        raise CertificateError(f"{spec.cert}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d} — "
                               "renew it (certbot renew, or check the cert-manager Certificate's status)")
    if replacing and now < leaf.not_valid_before_utc:
        raise CertificateError(f"{spec.cert}: the certificate is not valid before "
                               f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC — check this machine's clock")
    return Served(spec, leaf, key, tuple(c for c in chain if c is not leaf), _names(leaf), before)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        hint = CERT_HINT if what == "certificate" else KEY_HINT
        raise CertificateError(f"{path} does not exist (or is a broken symlink) — pass the PEM {what} file ({hint})"
                               ) from None
    except IsADirectoryError:
        raise CertificateError(f"{path}: a directory, not a {what} file — pass the files in it "
                               f"(--cert with {CERT_HINT}; --key with {KEY_HINT})") from None
    except PermissionError:
        raise CertificateError(f"{path}: privproxy's user may not read this {what} file — give it read access "
                               "(e.g. group privproxy, mode 0640, and search access to the directories above)"
                               ) from None
    except OSError as e:
        raise CertificateError(f"{path}: cannot read the {what} file ({e.strerror})") from None


def _key(spec: Spec, data: bytes) -> internals.PrivateKey:
    where = spec.key or spec.cert
    if b"PRIVATE KEY-----" not in data:
        hint = f"pass the key file ({KEY_HINT})" if spec.key else f"name the key file with --key ({KEY_HINT})"
        raise CertificateError(f"{where}: no private key in it — {hint}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(f"{where}: the private key is encrypted — store it unencrypted, readable only by "
                               "privproxy's user (openssl pkey -in KEY -out KEY.new)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"{where}: the private key cannot be read (damaged or cut short?) — pass the "
                               f"complete PEM file ({KEY_HINT})") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CertificateError(f"{where}: a {type(key).__name__.removesuffix('PrivateKey')} key — browsers accept "
                               "RSA and ECDSA certificates: issue one of those")
    return key


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return tuple(str(a.value).lower() for a in cn)
    return (*(n.lower() for n in san.get_values_for_type(x509.DNSName)),
            *(str(a) for a in san.get_values_for_type(x509.IPAddress)))


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
