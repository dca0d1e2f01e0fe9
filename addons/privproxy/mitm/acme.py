"""AcmeCertificates (`privproxy run --acme DOMAIN`): certificates obtained and renewed from an ACME CA by
privproxy itself, on its own listeners (C1).

The orders run on a worker thread (privproxy.acme_client.Manager); this adapter schedules them, answers the CA's
validations, and hands each new certificate to mitm.certificates, which serves it by SNI like any --cert file
(it watches the file, so a renewal by another instance sharing --acme-dir is served too):

- HTTP-01: a request for `/.well-known/acme-challenge/TOKEN`, in that canonical spelling only (the spelling
  https.Settings.is_exempt lets through over plain HTTP), with a token being solved for the Host's name, is
  answered here with the key authorization, never forwarded (access log outcome `acme_challenge`).
- TLS-ALPN-01: a TLS handshake that offers ALPN `acme-tls/1` for a name being solved gets the challenge
  certificate and that protocol (internals.answer_acme_tls_alpn); nothing is read or forwarded after it.

Challenges published by another instance sharing --acme-dir are answered too (the validation may reach any
instance behind a load balancer).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mitmproxy import ctx, exceptions, http, tls

from privproxy import https
from privproxy.acme_client import Answer, Attempt, Issuer, Manager, Result as AcmeResult, challenge_certificate
from privproxy.acme_state import (LETS_ENCRYPT, StateError, Store, check_ca_file, check_challenges, check_directory,
                                  check_domain, check_email)
from privproxy.mitm import flowview, internals
from privproxy.mitm.log_redaction import OPERATOR_MESSAGE
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Outcome, Result
from privproxy.wire import host_name

if TYPE_CHECKING:
    from cryptography import x509

    from privproxy.mitm.certificates import Certificates

logger = logging.getLogger(__name__)
ACME_OPTIONS = frozenset({"privproxy_acme_domains", "privproxy_acme_email", "privproxy_acme_directory",
                          "privproxy_acme_ca", "privproxy_acme_dir", "privproxy_acme_challenges",
                          "privproxy_acme_retry", "confdir"})
RECHECK_SECONDS = 60.0  # the schedule is read again at least this often (another instance's renewal, clock jumps)
BUSY_SECONDS = 10.0  # another instance sharing --acme-dir is ordering a name: look again this much later
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
_FOREIGN_CACHE = 64
T = TypeVar("T")


def store_from_options(options) -> Store | None:
    """The ACME state of these options (--acme-dir, else CONFDIR/acme; one subdirectory per ACME directory), or None
    without --acme names."""
    if not getattr(options, "privproxy_acme_domains", None):  # not declared: a host without privproxy's Options
        return None
    root = options.privproxy_acme_dir or str(Path(options.confdir).expanduser() / "acme")
    return Store(root, options.privproxy_acme_directory or LETS_ENCRYPT)


class Challenges:
    """The challenges to answer: the ones this process published (acme_client.Responder, called from the order's
    thread) and, from the shared store, another instance's."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self._http: dict[str, Answer] = {}
        self._tls: dict[str, tuple[x509.Certificate, internals.PrivateKey]] = {}
        self._foreign: dict[str, tuple[x509.Certificate, internals.PrivateKey]] = {}  # by key authorization

    def publish(self, answer: Answer) -> None:
        if answer.kind == "http-01":
            self._http[answer.token] = answer
        elif answer.kind == "tls-alpn-01":
            self._tls[answer.domain] = challenge_certificate(answer.domain, answer.key_authorization)

    def withdraw(self, answer: Answer) -> None:
        if answer.kind == "http-01":
            self._http.pop(answer.token, None)
        else:
            self._tls.pop(answer.domain, None)

    def http_01(self, token: str, host: str) -> str | None:
        """The key authorization for `token`, when it is a challenge for the name `host`."""
        answer = self._http.get(token)
        if answer is None and self.store is not None and _TOKEN.fullmatch(token):
            doc = self.store.challenge(token)
            if doc is not None and doc.get("type") == "http-01":
                answer = Answer(doc["domain"], "http-01", token, doc["key_authorization"])
        if answer is None or answer.domain != host:
            return None
        return answer.key_authorization

    def tls_alpn_01(self, sni: str) -> tuple[x509.Certificate, internals.PrivateKey] | None:
        name = sni.lower().rstrip(".")
        mine = self._tls.get(name)
        if mine is not None or self.store is None:
            return mine
        docs = self.store.challenges_for(name, "tls-alpn-01")
        if not docs:
            return None
        key_authorization = docs[-1]["key_authorization"]
        found = self._foreign.get(key_authorization)
        if found is None:
            if len(self._foreign) >= _FOREIGN_CACHE:
                self._foreign.clear()
            found = self._foreign[key_authorization] = challenge_certificate(name, key_authorization)
        return found


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` on a daemon thread of its own: an order can take minutes (a slow CA, network timeouts) and must
    not hold up the process's exit the way asyncio's default executor would (it joins its threads at shutdown).
    An order cut off by the exit leaves at most a temporary file and a lock the OS releases."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            result, error = None, e
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: the process is exiting

    threading.Thread(target=run, name="privproxy ACME order", daemon=True).start()
    return await done


def _utc(ts: float) -> str:
    return f"{datetime.datetime.fromtimestamp(ts, datetime.UTC):%Y-%m-%d %H:%M:%S} UTC"


class AcmeCertificates:
    def __init__(self, shared: SharedState, certificates: Certificates | None = None) -> None:
        self.shared = shared
        self.certificates = certificates
        self.challenges = Challenges()
        self.manager: Manager | None = None
        self._task: asyncio.Task[None] | None = None
        self._hold: dict[str, float] = {}  # name -> not before (another instance is ordering it)

    # --- configuration ----------------------------------------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        if not updated & ACME_OPTIONS:
            return
        opts = ctx.options
        store = store_from_options(opts)
        if store is None:
            self.manager, self.challenges.store = None, None
            return
        try:
            domains = tuple(dict.fromkeys(check_domain(d) for d in opts.privproxy_acme_domains))
            if not opts.privproxy_acme_email:
                raise ValueError("--acme needs --acme-email ADDR: the contact of the account privproxy registers "
                                 "with the CA (e.g. --acme-email ops@example.com)")
            email = check_email(opts.privproxy_acme_email)
            check_directory(store.directory)
            allowed = check_challenges(opts.privproxy_acme_challenges)
            ca_file = check_ca_file(opts.privproxy_acme_ca)
            if opts.privproxy_acme_retry < 1:
                raise ValueError("privproxy_acme_retry: at least 1 second")
            store.prepare()
        except (ValueError, StateError) as e:
            raise exceptions.OptionsError(str(e)) from None
        issuer = Issuer(store, email, ca_file)
        self.manager = Manager(store, issuer, domains, allowed, retry=float(opts.privproxy_acme_retry))
        self.challenges.store = store

    def running(self) -> None:
        manager = self.manager
        if manager is None or self._task is not None:
            return
        ps = ctx.master.addons.get("proxyserver")
        manager.listen_ports = tuple(a[1] for a in ps.listen_addrs()) if ps else ()
        if not {80, 443} & set(manager.listen_ports):
            logger.warning("privproxy: ACME: no --listen on port 443 or 80, where the CA validates (TLS-ALPN-01 on "
                           "443, HTTP-01 on 80): make sure a port forward or load balancer brings those ports to a "
                           "privproxy listener", extra=OPERATOR_MESSAGE)
        now = time.time()
        for domain in manager.domains:
            stored = manager.store.read_certificate(domain)
            attempts = manager.store.attempts(domain)
            self.shared.metrics.acme_name(domain, attempts.failures)
            if stored is not None:
                logger.info("privproxy: ACME: %s: certificate in %s (expires %s, renewed from %s)", domain,
                            stored.path, _utc(stored.not_after), _utc(stored.renew_at()), extra=OPERATOR_MESSAGE)
            else:
                logger.warning("privproxy: ACME: %s: no certificate yet, ordering one from %s (until it arrives, "
                               "handshakes for it get the local trial CA's)", domain, manager.store.directory,
                               extra=OPERATOR_MESSAGE)
            if attempts.failures and attempts.next_attempt > now:
                logger.warning("privproxy: ACME: %s: the last %d attempt(s) failed (%s); next attempt %s — to try at "
                               "once, remove %s", domain, attempts.failures, attempts.error,
                               _utc(attempts.next_attempt), manager.store.attempts_path(domain),
                               extra=OPERATOR_MESSAGE)
        self._task = asyncio.get_running_loop().create_task(self._run(manager))

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # --- the schedule ------------------------------------------------------------------------------------------------

    async def _run(self, manager: Manager) -> None:
        while True:
            try:
                await self.step(manager)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the scheduler must outlive any surprise
                logger.error("privproxy: ACME scheduler error (%s: %s)", type(e).__name__, e)
                await asyncio.sleep(RECHECK_SECONDS)

    async def step(self, manager: Manager) -> Attempt | None:
        """Wait for the next name that is due (at most RECHECK_SECONDS) and attempt it; the attempt, or None."""
        now = time.time()
        due = {d: max(manager.due(d), self._hold.get(d, 0.0)) for d in manager.domains}
        domain = min(due, key=due.__getitem__)
        if due[domain] > now:
            await asyncio.sleep(min(due[domain] - now, RECHECK_SECONDS))
            return None
        attempt = await in_thread(manager.attempt, domain, self.challenges)
        self.report(manager, attempt)
        return attempt

    def report(self, manager: Manager, attempt: Attempt) -> None:
        domain = attempt.domain
        if attempt.result == AcmeResult.BUSY:
            self._hold[domain] = time.time() + BUSY_SECONDS
            logger.debug("privproxy: ACME: %s: another instance is ordering it", domain)
            return
        self._hold.pop(domain, None)
        if attempt.result == AcmeResult.NOT_DUE:  # another instance sharing --acme-dir renewed it
            self._serve()
            return
        if attempt.result == AcmeResult.FAILED:
            self.shared.metrics.acme_order(domain, Result.FAILURE, attempt.attempts.failures)
            stored = manager.store.read_certificate(domain)
            if stored is None:
                serving = "no certificate for it yet"
            else:
                serving = f"the certificate in service expires {_utc(stored.not_after)}"
            logger.error("privproxy: ACME: %s: %s (failure %d in a row; next attempt %s; %s)", domain, attempt.error,
                         attempt.attempts.failures, _utc(attempt.attempts.next_attempt), serving,
                         extra=OPERATOR_MESSAGE)
            return
        obtained = attempt.obtained
        assert obtained is not None
        self.shared.metrics.acme_order(domain, Result.SUCCESS, 0)
        stored = manager.store.read_certificate(domain)
        renew = f"; renewal from {_utc(stored.renew_at())}" if stored is not None else ""
        logger.warning("privproxy: ACME: %s: certificate %s (serial %x, expires %s) in %.1f s%s%s", domain,
                       attempt.result.value, obtained.serial, _utc(obtained.not_after), obtained.seconds,
                       f" by {obtained.challenge}" if obtained.challenge else "", renew, extra=OPERATOR_MESSAGE)
        self._serve()

    def _serve(self) -> None:
        if self.certificates is not None:
            self.certificates.check()

    # --- answering the CA ------------------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """HTTP-01: after PrivacyFilter has read the request (its canonical target and Host), and only when nothing
        has answered it yet."""
        if self.manager is None or flowview.answered(flow):
            return
        state = flowview.state_of(flow)
        view = flowview.peek(flow)
        if state is None or state.target is None or view is None or view.view is None:
            return
        target = state.target
        if not (target.canonical and target.query is None and target.path.startswith(https.ACME_PREFIX)):
            return
        if view.view.method not in ("GET", "HEAD"):
            return
        token = target.path[len(https.ACME_PREFIX):]
        key_authorization = self.challenges.http_01(token, host_name(state.host)) if _TOKEN.fullmatch(token) else None
        if key_authorization is not None:
            flowview.answer_here(flow, Outcome.ACME_CHALLENGE, 200, key_authorization.encode(),
                                 {"content-type": "text/plain", "cache-control": "no-store"})

    def tls_start_client(self, tls_start: tls.TlsData) -> None:
        """TLS-ALPN-01: a handshake offering acme-tls/1 for a name being validated."""
        if self.manager is None:
            return
        sni = internals.acme_tls_alpn_sni(tls_start)
        if not sni:
            return
        found = self.challenges.tls_alpn_01(sni)
        if found is not None:
            internals.answer_acme_tls_alpn(tls_start, *found)
