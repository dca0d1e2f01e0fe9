"""Certificates: the operator's certificate files (`--cert FILE --key FILE` as certbot and cert-manager write them,
or one combined PEM) and the ones privproxy obtains itself (`--acme DOMAIN`, kept by privproxy.mitm.acme), served
by SNI, re-read when they change on disk (a kubelet `..data` swap, an ACME renewal, another instance's renewal in a
shared --acme-dir) and on SIGHUP. A replacement that cannot be served keeps the certificate in service, and is
logged and counted (C1, C15). An ACME name without a certificate yet gets mitmproxy's local-CA one until it has."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from mitmproxy import certs, ctx, exceptions

from privproxy.acme_state import check_domain
from privproxy.mitm import internals
from privproxy.mitm.acme import ACME_OPTIONS, store_from_options
from privproxy.mitm.certificate_files import CERT_HINT, CertificateError, Served, Spec, Stamp, is_ca, read, stamp
from privproxy.mitm.exporter import certificate_name
from privproxy.mitm.log_redaction import OPERATOR_MESSAGE
from privproxy.mitm.shared import SharedState, poll_forever
from privproxy.outcome import Result

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.5  # a replaced file reaches new handshakes within about this long (the promise is 2 s)
# Under mitmproxy's confdir: the intermediates of served certificates, one file per distinct chain (named by its
# content, so renewals under the same intermediate share it). Never pruned: another process with the same confdir
# may serve from a file, and tlsconfig reads it again whenever its SSL context cache misses.
CHAIN_DIR = "privproxy-chains"


def parse_options(certs_option: list[str] | tuple[str, ...], keys_option: list[str] | tuple[str, ...]
                  ) -> tuple[Spec, ...]:
    if len(keys_option) > len(certs_option):
        raise exceptions.OptionsError("privproxy_cert_keys: more key files than privproxy_certs entries (each key "
                                      "belongs to the certificate at the same position)")
    specs = (Spec.parse(c, keys_option[i] if i < len(keys_option) else "") for i, c in enumerate(certs_option))
    return tuple(dict.fromkeys(specs))


def acme_specs(options, files: tuple[Spec, ...]) -> tuple[Spec, ...]:
    """The certificate file of each --acme name (it may not exist yet). A name also given to a --cert DOMAIN= is
    refused: one source per name."""
    store = store_from_options(options)
    if store is None:
        return ()
    named = {s.domain for s in files if s.domain}
    specs = []
    for raw in options.privproxy_acme_domains:
        try:
            domain = check_domain(raw)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if domain in named:
            raise exceptions.OptionsError(f"{domain}: both --acme and --cert {domain}=FILE — choose one source for "
                                          "the name (drop the --cert to let privproxy obtain it, or the --acme)")
        specs.append(Spec(str(store.certificate_path(domain)), "", domain, acme=True))
    return tuple(dict.fromkeys(specs))


class Certificates:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.specs: tuple[Spec, ...] = ()
        self.served: dict[Spec, Served] = {}
        self._entries: dict[Spec, certs.CertStoreEntry] = {}
        self._by_name: dict[str, certs.CertStoreEntry] = {}
        self._default: certs.CertStoreEntry | None = None
        self._suspect: dict[Spec, Stamp] = {}  # failed once: reported if it still fails unchanged at the next look
        self._refused: dict[Spec, Stamp] = {}  # reported: not read again until the files change
        self._expiries: dict[str, float] = {}  # privproxy_certificate_expiry_timestamp_seconds as last set
        self._task: asyncio.Task[None] | None = None

    def configure(self, updated: set[str]) -> None:
        if not updated & {"privproxy_certs", "privproxy_cert_keys", "confdir", *ACME_OPTIONS}:
            return
        files = parse_options(ctx.options.privproxy_certs, ctx.options.privproxy_cert_keys)
        specs = files + acme_specs(ctx.options, files)
        now = datetime.datetime.now(datetime.UTC)
        try:
            served = {spec: read(spec, now) for spec in files}
            for spec in specs[len(files):]:
                if (s := self._stored(spec, now)) is not None:
                    served[spec] = s
            entries = {spec: self._entry(s) for spec, s in served.items()}
        except CertificateError as e:
            raise exceptions.OptionsError(str(e)) from None
        except OSError as e:
            raise exceptions.OptionsError(f"{e.filename}: cannot write the certificate chain there ({e.strerror}) — "
                                          "give privproxy's user a writable --confdir") from None
        self.specs, self.served, self._entries = specs, served, entries
        self._suspect.clear()
        self._refused.clear()
        self._index()
        self._publish_expiries()
        internals.choose_certificates(ctx.master, self.choose if specs else None)
        for s in served.values():
            self._warn(s, now)

    @staticmethod
    def _stored(spec: Spec, now: datetime.datetime) -> Served | None:
        """An ACME name's stored certificate at start, or None: none yet, or one that cannot be served (said,
        and ordered anew by privproxy.mitm.acme)."""
        if stamp(spec) == (None,):
            return None
        try:
            return read(spec, now)
        except CertificateError as e:
            logger.warning("privproxy: %s; a new certificate is ordered", e, extra=OPERATOR_MESSAGE)
            return None

    def running(self) -> None:
        if self.specs and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def choose(self, sni: str | None) -> certs.CertStoreEntry | None:
        """The certificate for a TLS handshake: the one for the SNI name (exact, then wildcard), else the default."""
        if sni:
            name = sni.lower().rstrip(".")
            entry = self._by_name.get(name)
            if entry is None and "." in name:
                entry = self._by_name.get("*." + name.split(".", 1)[1])
            if entry is not None:
                return entry
        return self._default

    def check(self, force: bool = False) -> list[Result]:
        """Re-read the certificates whose files changed (all of them with force, as on SIGHUP) and serve the valid
        ones to new handshakes; what each re-read gave. A file that fails on a poll is looked at once more before
        it is reported: certbot points fullchain.pem and privkey.pem at the renewal one after the other."""
        now = datetime.datetime.now(datetime.UTC)
        results: list[Result] = []
        for spec in self.specs:
            current = self.served.get(spec)  # None: an ACME name whose certificate has not been written yet
            st = stamp(spec)
            if current is None and st == (None,):
                continue
            if not force and st in (current.stamp if current else None, self._refused.get(spec)):
                continue
            try:
                new = read(spec, now, replacing=True)
                entry = self._entry(new)
            except (CertificateError, OSError) as e:
                if not force and self._suspect.get(spec) != st:
                    self._suspect[spec] = st
                    continue
                self._suspect.pop(spec, None)
                self._refused[spec] = st
                self.shared.metrics.certificate_reload(Result.FAILURE)
                logger.error("privproxy: %s; still serving the previous certificate (%s) for %s", e,
                             current.describe() if current else "none", spec, extra=OPERATOR_MESSAGE)
                results.append(Result.FAILURE)
                continue
            self._suspect.pop(spec, None)
            self._refused.pop(spec, None)
            self.served[spec], self._entries[spec] = new, entry
            self.shared.metrics.certificate_reload(Result.SUCCESS)
            results.append(Result.SUCCESS)
            if current is not None and new.cert == current.cert:
                logger.info("privproxy: %s re-read, unchanged (%s)", spec, new.describe(), extra=OPERATOR_MESSAGE)
            else:
                logger.warning("privproxy: now serving %s from %s (was %s)", new.describe(), spec,
                               current.describe() if current else "none", extra=OPERATOR_MESSAGE)
                self._warn(new, now)
        if results:
            self._index()
            self._publish_expiries()
        return results

    async def _watch(self) -> None:
        await poll_forever(self.check, POLL_SECONDS, "certificate")

    def _entry(self, served: Served) -> certs.CertStoreEntry:
        chain_file = None
        if served.intermediates:
            pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in served.intermediates)
            directory = Path(ctx.options.confdir).expanduser() / CHAIN_DIR
            chain_file = directory / f"{hashlib.sha256(pem).hexdigest()[:32]}.pem"
            if not chain_file.exists():
                directory.mkdir(parents=True, exist_ok=True)
                tmp = chain_file.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(pem)
                os.replace(tmp, chain_file)
        return internals.certificate_entry(served.cert, served.key, served.intermediates, chain_file)

    def _index(self) -> None:
        """Names to entries, rebuilt whole and swapped in: the names in each certificate (the first --cert wins),
        then the DOMAIN= and --acme names; any other name, or none, gets the first --cert without DOMAIN= (else the
        first certificate served)."""
        by_name: dict[str, certs.CertStoreEntry] = {}
        serving = [spec for spec in self.specs if spec in self._entries]  # an ACME name may have none yet
        for spec in serving:
            for name in self.served[spec].names:
                by_name.setdefault(name, self._entries[spec])
        for spec in serving:
            if spec.domain:
                by_name[spec.domain] = self._entries[spec]
        default = next((self._entries[s] for s in serving if not s.domain),
                       self._entries[serving[0]] if serving else None)
        self._by_name, self._default = by_name, default

    def _publish_expiries(self) -> None:
        """Each served certificate's notAfter by its name (mitm.exporter's naming: first DNS name, else file name);
        a name no longer served loses its series."""
        found: dict[str, float] = {}
        for s in self.served.values():
            name = certificate_name(s.cert, Path(s.spec.cert).name)
            found[name] = min(s.expires.timestamp(), found.get(name, s.expires.timestamp()))
        for name in self._expiries.keys() - found.keys():
            self.shared.metrics.certificate_removed(name)
        for name, not_after in found.items():
            self.shared.metrics.certificate(name, not_after)
        self._expiries = found

    def _warn(self, served: Served, now: datetime.datetime) -> None:
        """Served anyway, said loudly. (A warning: mitmproxy ends a start that logs an error, and a proxy that
        does not start cannot pick up the renewal; a replacement that expired is refused instead.)"""
        spec = served.spec
        if now > served.expires:
            logger.warning("privproxy: %s: the certificate expired on %s: browsers refuse it — renew it; the "
                           "renewed file is served as soon as it is written", spec.cert, f"{served.expires:%Y-%m-%d}",
                           extra=OPERATOR_MESSAGE)
        if spec.domain and not served.covers(spec.domain):
            logger.warning("privproxy: %s: the certificate does not name %s (it names %s): clients will refuse it",
                           spec.cert, spec.domain, ", ".join(served.names) or "nothing", extra=OPERATOR_MESSAGE)
        if is_ca(served.cert):
            logger.warning("privproxy: %s: the certificate matching the key is a CA certificate, not a site's — "
                           f"pass the site's certificate ({CERT_HINT})", spec.cert, extra=OPERATOR_MESSAGE)
