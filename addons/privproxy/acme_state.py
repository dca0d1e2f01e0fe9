"""What privproxy's ACME client keeps on disk, and when it next asks the CA (C1).

Under the ACME directory (`--acme-dir`, default `CONFDIR/acme`), one subdirectory per ACME server (its
directory URL as a name, e.g. `acme-v02.api.letsencrypt.org-directory`, so a staging certificate is never served
as a production one):

    account.key                   the account's private key (PEM)
    account.json                  its registration: URL at the CA, contact, when made
    certificates/NAME.pem         each name's private key and certificate chain in one file (swapped whole)
    certificates/NAME.json        failed attempts: count, next attempt, last error (the backoff; gone on success)
    challenges/TOKEN.json         answers to challenges in flight, so every instance sharing the directory gives them
    locks/NAME.lock, account.lock held while one instance orders, so instances sharing it take turns

Every file is written whole under a temporary name and renamed over (a reader sees the old or the new file, never
half of one) with mode 0600; the directories are 0700.

A certificate is renewed at two thirds of its lifetime (day 60 of Let's Encrypt's 90); a failed attempt is
retried after `retry` seconds, doubling each time up to six hours (one tenth jitter), and the backoff survives a
restart so a restart loop does not hammer the CA.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
RENEW_AT = 2 / 3  # of a certificate's lifetime
FIRST_RETRY = 300.0  # seconds after a first failure: at most four failed validations an hour (Let's Encrypt allows 5)
MAX_RETRY = 6 * 3600.0
JITTER = 0.1
CHALLENGE_TYPES = ("tls-alpn-01", "http-01")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
_EMAIL = re.compile(r"[^@\s:,<>]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


class StateError(Exception):
    """The ACME directory cannot be used; the message names the path and what to do."""


# --- What the operator asks for ------------------------------------------------------------------------------------


def check_domain(value: str) -> str:
    """The name as the CA is asked for it (lower case, no trailing dot); ValueError says what to pass instead."""
    name = value.strip().lower().rstrip(".")
    if name.startswith("*."):
        raise ValueError(f"--acme {value}: a wildcard needs the DNS-01 challenge, which privproxy does not answer — "
                         "name each host (--acme www.example.com --acme shop.example.com), or get the wildcard "
                         "certificate with your DNS provider's tooling and pass it with --cert")
    try:
        import ipaddress

        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"--acme {value}: an address, not a DNS name — pass the name visitors use "
                         "(--acme www.example.com)")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"--acme {value!r}: not a public DNS name — pass the name visitors use, e.g. "
                         "--acme www.example.com (the CA connects to it)")
    return name


def check_email(value: str) -> str:
    if not _EMAIL.fullmatch(value.strip()):
        raise ValueError(f"--acme-email {value!r}: not an e-mail address — pass the address the CA may write to "
                         "about this account, e.g. --acme-email ops@example.com")
    return value.strip()


def check_directory(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--acme-directory {url!r}: an ACME directory is an https:// URL (RFC 8555), e.g. "
                         f"{LETS_ENCRYPT} (the default) or {LETS_ENCRYPT_STAGING} for trials")
    return url


def check_challenges(values) -> tuple[str, ...]:
    """The challenge types to answer, in order of preference; none given: both."""
    chosen = tuple(dict.fromkeys(v.strip().lower() for v in values))
    for v in chosen:
        if v not in CHALLENGE_TYPES:
            raise ValueError(f"--acme-challenge {v!r}: privproxy answers {' and '.join(CHALLENGE_TYPES)} (DNS-01 "
                             "needs your DNS provider: get such a certificate elsewhere and pass it with --cert)")
    return chosen or CHALLENGE_TYPES


def check_ca_file(path: str) -> str:
    """A PEM file of CA certificates to trust for the ACME directory's TLS (a private CA), or "" for the usual
    public roots."""
    if not path:
        return ""
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as e:
        raise ValueError(f"--acme-ca {path}: cannot read it ({e.strerror}) — pass the PEM certificate of the CA "
                         "that signed your ACME server's TLS certificate") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"--acme-ca {path}: no PEM certificate in it (one starts with -----BEGIN CERTIFICATE-----) "
                         "— pass the CA certificate that signed your ACME server's TLS certificate") from None
    return str(file)


def directory_id(url: str) -> str:
    """The directory URL as a file name: `https://acme-v02.api.letsencrypt.org/directory` ->
    `acme-v02.api.letsencrypt.org-directory` (as Caddy names its issuers)."""
    parts = urlsplit(url)
    raw = parts.netloc + parts.path
    return re.sub(r"[^A-Za-z0-9.]+", "-", raw).strip("-.").lower() or "acme"


# --- Files -----------------------------------------------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """`path` replaced whole by `data`, mode 0600: written under a temporary name in the same directory, flushed,
    renamed over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass(frozen=True, slots=True)
class Stored:
    """A name's certificate as stored: what the schedule needs."""

    path: Path
    not_before: float
    not_after: float
    serial: int

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def renew_at(self) -> float:
        return self.not_before + self.lifetime * RENEW_AT


@dataclass(frozen=True, slots=True)
class Attempts:
    """Failed attempts since the last certificate: the backoff."""

    failures: int = 0
    next_attempt: float = 0.0  # seconds since the epoch
    error: str = ""
    challenge: str = ""  # the challenge type of the last failure ("" when it failed before choosing one)

    def after_failure(self, now: float, error: str, challenge: str, retry: float = FIRST_RETRY,
                      rng: random.Random | None = None) -> Attempts:
        delay = min(retry * 2 ** self.failures, MAX_RETRY)
        delay *= 1 + JITTER * (2 * (rng or random).random() - 1)
        return Attempts(self.failures + 1, now + delay, error, challenge)


def due(stored: Stored | None, attempts: Attempts) -> float:
    """When the name's next order should start (seconds since the epoch): now when there is no certificate, at two
    thirds of its lifetime otherwise; never before the backoff of failed attempts allows."""
    at = 0.0 if stored is None else stored.renew_at()
    return max(at, attempts.next_attempt) if attempts.failures else at


def challenge_order(allowed: tuple[str, ...], listen_ports: tuple[int, ...], last_failed: str) -> tuple[str, ...]:
    """The challenge types to prefer, best first: TLS-ALPN-01 when a listener is on 443 (or none is on 80),
    HTTP-01 when one is on 80 and none on 443; the type that failed last goes to the back (a TLS-terminating load
    balancer in front breaks TLS-ALPN-01, a port 80 that does not reach privproxy breaks HTTP-01)."""
    order = list(allowed)
    if 80 in listen_ports and 443 not in listen_ports and "http-01" in order:
        order.remove("http-01")
        order.insert(0, "http-01")
    if last_failed in order and len(order) > 1:
        order.remove(last_failed)
        order.append(last_failed)
    return tuple(order)


class Store:
    """One ACME server's state under the ACME directory (see the module's docstring)."""

    def __init__(self, root: str | Path, directory: str) -> None:
        self.root = Path(root).expanduser()
        self.directory = directory
        self.base = self.root / directory_id(directory)

    # layout
    def certificate_path(self, domain: str) -> Path:
        return self.base / "certificates" / f"{domain}.pem"

    def attempts_path(self, domain: str) -> Path:
        return self.base / "certificates" / f"{domain}.json"

    @property
    def account_key_path(self) -> Path:
        return self.base / "account.key"

    @property
    def account_path(self) -> Path:
        return self.base / "account.json"

    def prepare(self) -> None:
        """Make the directories (0700) and check that this process can write there; StateError says what to do."""
        try:
            for d in (self.root, self.base, self.base / "certificates", self.base / "challenges",
                      self.base / "locks"):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.base / f".probe.{os.getpid()}"
            write_private(probe, b"")
            probe.unlink()
        except OSError as e:
            where = e.filename or self.base
            raise StateError(f"{where}: cannot keep the ACME account and certificates there ({e.strerror}) — give "
                             "privproxy's user a writable --acme-dir (or --confdir), e.g. /var/lib/privproxy/acme, "
                             "on a volume that survives restarts") from None

    # certificates
    def read_certificate(self, domain: str) -> Stored | None:
        """The stored certificate's dates, or None when there is none that can be read (then it is ordered anew)."""
        path = self.certificate_path(domain)
        try:
            data = path.read_bytes()
            leaf = x509.load_pem_x509_certificates(data)[0]
        except (OSError, ValueError, IndexError):
            return None
        return Stored(path, leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp(),
                      leaf.serial_number)

    def write_certificate(self, domain: str, key_pem: bytes, fullchain_pem: bytes) -> Path:
        """The key and the chain (site certificate first) in one file, replaced in one rename: a reader never
        sees a new certificate beside an old key."""
        path = self.certificate_path(domain)
        write_private(path, key_pem.rstrip(b"\n") + b"\n" + fullchain_pem)
        return path

    # backoff
    def attempts(self, domain: str) -> Attempts:
        try:
            doc = json.loads(self.attempts_path(domain).read_bytes())
            return Attempts(int(doc["failures"]), float(doc["next_attempt"]), str(doc.get("error", "")),
                            str(doc.get("challenge", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return Attempts()

    def write_attempts(self, domain: str, attempts: Attempts) -> None:
        if attempts.failures == 0:
            with contextlib.suppress(FileNotFoundError):
                self.attempts_path(domain).unlink()
            return
        doc = {**asdict(attempts), "next_attempt_utc": _iso(attempts.next_attempt)}
        write_private(self.attempts_path(domain), json.dumps(doc, indent=1).encode() + b"\n")

    # account
    def account_key_pem(self) -> bytes | None:
        try:
            return self.account_key_path.read_bytes()
        except FileNotFoundError:
            return None

    def write_account_key(self, pem: bytes) -> None:
        write_private(self.account_key_path, pem)

    def account(self) -> dict[str, str] | None:
        try:
            doc = json.loads(self.account_path.read_bytes())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("uri"), str) else None

    def write_account(self, uri: str, email: str) -> None:
        doc = {"uri": uri, "email": email, "directory": self.directory, "written": _iso(time.time())}
        write_private(self.account_path, json.dumps(doc, indent=1).encode() + b"\n")

    # challenges in flight, for every instance that shares the directory
    def publish_challenge(self, domain: str, kind: str, token: str, key_authorization: str) -> None:
        doc = {"domain": domain, "type": kind, "token": token, "key_authorization": key_authorization}
        write_private(self._challenge_path(token), json.dumps(doc).encode())

    def withdraw_challenge(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self._challenge_path(token).unlink()

    def challenge(self, token: str) -> dict[str, str] | None:
        """The challenge published for this token (by this or another instance), or None."""
        try:
            doc = json.loads(self._challenge_path(token).read_bytes())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("token") == token else None

    def challenges_for(self, domain: str, kind: str) -> list[dict[str, str]]:
        """Every challenge of this type published for the name (a handful at most, while an order runs)."""
        found = []
        try:
            entries = list(os.scandir(self.base / "challenges"))
        except OSError:
            return []
        for entry in entries:
            if entry.name.endswith(".json"):
                doc = self.challenge(entry.name[:-5])
                if doc is not None and doc.get("domain") == domain and doc.get("type") == kind:
                    found.append(doc)
        return found

    def _challenge_path(self, token: str) -> Path:
        if not _TOKEN.fullmatch(token):
            raise ValueError("not an ACME token")
        return self.base / "challenges" / f"{token}.json"

    # turns between instances
    @contextlib.contextmanager
    def turn(self, name: str, wait: float = 0.0) -> Iterator[bool]:
        """Take the lock `name`, trying for up to `wait` seconds (default: once): True while this process holds
        it, False when another one does. (flock: local file systems and NFSv4.)"""
        path = self.base / "locks" / f"{name}.lock"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def private_key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
