"""Self-signed certificates for tests, made with `cryptography` (a mitmproxy dependency)."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_self_signed(path: Path, hostname: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )
    return path


# --- A CA, an intermediate and leaves signed by it: the files certbot and cert-manager write ---------------------


class Authority:
    """A root CA and an intermediate (as Let's Encrypt's ISRG Root X1 and R11): leaves are signed by the
    intermediate, clients trust the root only, so a server must send the intermediate with its leaf."""

    def __init__(self, name: str = "privproxy test") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        self.root = (
            x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(self.root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} intermediate")])
        self.intermediate = (
            x509.CertificateBuilder().subject_name(inter_name).issuer_name(root_name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                           critical=False)
            .sign(self.root_key, hashes.SHA256())
        )

    def root_pem(self, path: Path) -> Path:
        path.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, *hostnames: str, days: int = 90, expired: bool = False, rsa_key: bool = False) -> Issued:
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(days=days + 2 if expired else 1)
        end = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(self.intermediate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert, key, self.intermediate)


class Issued:
    """A leaf with its key and chain, written as certbot (fullchain.pem, privkey.pem), cert-manager (tls.crt,
    tls.key) or as one combined PEM."""

    def __init__(self, cert: x509.Certificate, key, intermediate: x509.Certificate) -> None:
        self.cert, self.key, self.intermediate = cert, key, intermediate

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def fingerprint(self) -> bytes:
        return self.cert.fingerprint(hashes.SHA256())

    def fullchain(self) -> bytes:
        return (self.cert.public_bytes(serialization.Encoding.PEM)
                + self.intermediate.public_bytes(serialization.Encoding.PEM))

    def privkey(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, cert_path: Path, key_path: Path | None = None) -> None:
        """cert_path gets the chain; key_path the key, or (None) the key goes into cert_path too (combined)."""
        if key_path is None:
            cert_path.write_bytes(self.privkey() + self.fullchain())
        else:
            cert_path.write_bytes(self.fullchain())
            key_path.write_bytes(self.privkey())
