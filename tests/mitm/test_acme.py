"""AcmeCertificates under mitmproxy's test context (C1): the options checked with what to do; HTTP-01 answered by
privproxy for exactly the canonical spelling of a token it solves for that Host, recorded and never forwarded;
TLS-ALPN-01 handshakes answered with the challenge certificate; challenges another instance published in the shared
--acme-dir answered too; an ACME certificate one more source of mitm.certificates' SNI choice."""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import connection, exceptions, tls
from mitmproxy.addons import tlsconfig
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons

import privproxy.mitm
from privproxy import acme_state
from privproxy.acme_client import Answer
from privproxy.metrics import Metrics
from privproxy.mitm.acme import AcmeCertificates
from privproxy.mitm.certificates import Certificates
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Outcome
from tests.certs import Authority
from tests.helpers import REPO
from tests.mitm.conftest import make_flow

TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
KEY_AUTHZ = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


@pytest.fixture
def acme(tmp_path, monkeypatch):
    """privproxy's addons with --acme shop.example, state in tmp_path/acme."""
    monkeypatch.setenv("PRIVPROXY_SECRET", "mitm-test-secret")
    shared = SharedState(Metrics())
    addons = privproxy.mitm.addons(shared)
    tc = tlsconfig.TlsConfig()
    with taddons.context(tc, *addons) as tctx:
        tctx.configure(tc, confdir=str(tmp_path / "conf"))
        tctx.configure(addons[0], privproxy_config=str(REPO / "filters.yaml"), privproxy_log_dir=str(tmp_path / "logs"),
                       privproxy_acme_domains=["Shop.Example"], privproxy_acme_email="ops@shop.example",
                       privproxy_acme_dir=str(tmp_path / "acme"))
        addon = next(a for a in addons if isinstance(a, AcmeCertificates))
        yield addon, addons, tctx, shared, tc


def through(addons, flow):
    for a in addons:
        if hasattr(a, "requestheaders"):
            a.requestheaders(flow)
    return flow


def published(addon: AcmeCertificates, domain: str = "shop.example", kind: str = "http-01") -> Answer:
    answer = Answer(domain, kind, TOKEN, KEY_AUTHZ)
    addon.challenges.publish(answer)
    return answer


def test_the_options_are_checked_with_what_to_do(acme, tmp_path):
    addon, addons, tctx, _, _ = acme
    assert addon.manager.domains == ("shop.example",)
    assert addon.manager.store.base == tmp_path / "acme" / "acme-v02.api.letsencrypt.org-directory"
    for options, says in [
        ({"privproxy_acme_email": ""}, "--acme needs --acme-email ADDR"),
        ({"privproxy_acme_domains": ["*.shop.example"]}, "wildcard"),
        ({"privproxy_acme_directory": "http://ca.example/dir"}, "https:// URL"),
        ({"privproxy_acme_ca": str(tmp_path / "missing.pem")}, "cannot read it"),
        ({"privproxy_acme_challenges": ["dns-01"]}, "DNS-01"),
        ({"privproxy_acme_retry": 0}, "at least 1 second"),
        ({"privproxy_acme_dir": str(REPO / "README.md" / "acme")}, "writable --acme-dir"),
    ]:
        with pytest.raises(exceptions.OptionsError, match=says):
            tctx.configure(addons[0], **options)


def test_http_01_is_answered_here_recorded_and_never_forwarded(acme):
    addon, addons, *_ = acme
    published(addon)
    f = through(addons, make_flow(f"/.well-known/acme-challenge/{TOKEN}", tls=False, host="shop.example:80"))
    assert f.response.status_code == 200 and f.response.content == KEY_AUTHZ.encode()
    assert f.response.headers["content-type"] == "text/plain"
    from privproxy.mitm import flowview

    assert flowview.outcome_of(f) == Outcome.ACME_CHALLENGE
    # over HTTPS too (a validator following a redirect to 443)
    assert through(addons, make_flow(f"/.well-known/acme-challenge/{TOKEN}", host="shop.example")).response.content \
        == KEY_AUTHZ.encode()


@pytest.mark.parametrize("path, host", [
    (f"/.well-known/acme-challenge/{TOKEN}", "blog.example"),  # a token of another name
    ("/.well-known/acme-challenge/otherToken", "shop.example"),  # not being solved
    (f"/.well-known/acme-challenge/{TOKEN}?x=1", "shop.example"),  # the CA sends no query
    (f"/.well-known/acme-challenge//{TOKEN}", "shop.example"),  # not the canonical spelling
    (f"/.well-known/acme-challenge/%{ord(TOKEN[0]):02X}{TOKEN[1:]}", "shop.example"),
    (f"/.well-known/x/../acme-challenge/{TOKEN}", "shop.example"),
    (f"/.WELL-KNOWN/acme-challenge/{TOKEN}", "shop.example"),
])
def test_anything_else_goes_its_usual_way(acme, path, host):
    addon, addons, *_ = acme
    published(addon)
    f = through(addons, make_flow(path, tls=False, host=host))
    assert f.response is None or f.response.status_code != 200  # forwarded, or redirected, never the answer


def test_a_withdrawn_challenge_is_no_longer_answered_and_post_is_not(acme):
    addon, addons, *_ = acme
    answer = published(addon)
    f = make_flow(f"/.well-known/acme-challenge/{TOKEN}", tls=False)
    f.request.method = "POST"
    assert through(addons, f).response is None
    addon.challenges.withdraw(answer)
    assert through(addons, make_flow(f"/.well-known/acme-challenge/{TOKEN}", tls=False)).response is None


def test_a_challenge_another_instance_published_is_answered(acme):
    addon, addons, *_ = acme
    other = acme_state.Store(addon.manager.store.root, addon.manager.store.directory)  # sharing --acme-dir
    other.publish_challenge("blog.example", "http-01", TOKEN, KEY_AUTHZ)  # a name only the other one has
    f = through(addons, make_flow(f"/.well-known/acme-challenge/{TOKEN}", tls=False, host="blog.example"))
    assert f.response.content == KEY_AUTHZ.encode()
    other.publish_challenge("blog.example", "tls-alpn-01", "tok2", "tok2.thumb")
    cert, _ = addon.challenges.tls_alpn_01("Blog.Example.")
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["blog.example"]


def tls_start(tctx, tc, sni: str, offers: list[bytes]) -> tls.TlsData:
    client = connection.Client(peername=("127.9.8.7", 5555), sockname=("127.0.0.1", 443), timestamp_start=1)
    client.sni, client.alpn_offers = sni, offers
    data = tls.TlsData(client, Context(client, tctx.options))
    tc.tls_start_client(data)
    return data


def test_tls_alpn_01_handshakes_get_the_challenge_certificate(acme):
    addon, addons, tctx, _, tc = acme
    published(addon, kind="tls-alpn-01")
    data = tls_start(tctx, tc, "shop.example", [b"acme-tls/1"])
    prepared = data.ssl_conn
    addon.tls_start_client(data)
    assert data.ssl_conn is not prepared
    cert = data.ssl_conn.get_certificate().to_cryptography()
    assert cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")).critical
    for sni, offers in [("shop.example", [b"h2"]), ("blog.example", [b"acme-tls/1"])]:
        other = tls_start(tctx, tc, sni, offers)
        kept = other.ssl_conn
        addon.tls_start_client(other)
        assert other.ssl_conn is kept  # a visitor's handshake, or a name not being validated: untouched


def test_an_acme_certificate_is_one_more_source_of_the_sni_choice(acme, tmp_path):
    addon, addons, tctx, shared, tc = acme
    certs = next(a for a in addons if isinstance(a, Certificates))
    assert certs.choose("shop.example") is None  # none yet: mitmproxy's local CA answers meanwhile
    issued = Authority().issue("shop.example")
    addon.manager.store.write_certificate("shop.example", issued.privkey(), issued.fullchain())
    assert [r.value for r in certs.check()] == ["success"]
    entry = certs.choose("shop.example")
    assert entry.cert.serial == issued.serial and entry.chain_file is not None
    assert shared.metrics.registry.get_sample_value("privproxy_certificate_expiry_timestamp_seconds",
                                                    {"certificate": "shop.example"}) == \
        issued.cert.not_valid_after_utc.timestamp()
    # tlsconfig serves it to a visitor's handshake for that name
    data = tls_start(tctx, tc, "shop.example", [b"h2", b"http/1.1"])
    assert data.ssl_conn.get_certificate().to_cryptography().serial_number == issued.serial
    der = data.ssl_conn.get_certificate().to_cryptography().public_bytes(serialization.Encoding.DER)
    assert ssl.DER_cert_to_PEM_cert(der).startswith("-----BEGIN CERTIFICATE-----")


def test_a_name_from_both_sources_is_refused(acme, tmp_path):
    _, addons, tctx, *_ = acme
    issued = Authority().issue("shop.example")
    issued.write(tmp_path / "shop.pem")
    with pytest.raises(exceptions.OptionsError, match="choose one source for the name"):
        tctx.configure(addons[0], privproxy_certs=[f"shop.example={tmp_path / 'shop.pem'}"])


class FakeIssuer:
    """In place of the network: writes a certificate as acme_client.Issuer does, or fails as it would."""

    email = "ops@shop.example"

    def __init__(self, store, fail: Exception | None = None) -> None:
        self.store, self.fail = store, fail

    def obtain(self, domain, prefer, responder):
        from privproxy.acme_client import Obtained

        if self.fail is not None:
            raise self.fail
        issued = Authority().issue(domain)
        self.store.write_certificate(domain, issued.privkey(), issued.fullchain())
        return Obtained(domain, issued.serial, issued.cert.not_valid_after_utc.timestamp(), prefer[0], 0.5)


def test_an_order_on_its_thread_is_served_counted_and_failures_are_told(acme, caplog):
    import asyncio
    import logging

    from privproxy.acme_client import AcmeError, Result

    addon, addons, _, shared, _ = acme
    certs = next(a for a in addons if isinstance(a, Certificates))
    m = addon.manager
    m.issuer = FakeIssuer(m.store, fail=AcmeError("the CA could not validate shop.example by http-01: 404 — fix"))
    sample = shared.metrics.registry.get_sample_value
    with caplog.at_level(logging.INFO):
        failed = asyncio.run(addon.step(m))
    assert failed.result == Result.FAILED and sample("privproxy_acme_orders_total", {"result": "failure"}) == 1
    assert sample("privproxy_acme_consecutive_failures", {"certificate": "shop.example"}) == 1
    assert "404 — fix (failure 1 in a row; next attempt" in caplog.text and "no certificate for it yet" in caplog.text
    m.issuer.fail = None
    m.store.write_attempts("shop.example", acme_state.Attempts())  # as after the backoff
    ok = asyncio.run(addon.step(m))
    assert ok.result == Result.ISSUED and sample("privproxy_acme_orders_total", {"result": "success"}) == 1
    assert sample("privproxy_acme_consecutive_failures", {"certificate": "shop.example"}) == 0
    assert certs.choose("shop.example").cert.serial == ok.obtained.serial  # served at once, no poll needed
    assert "certificate issued (serial" in caplog.text


def test_in_thread_hands_back_the_result_or_the_exception():
    import asyncio

    from privproxy.mitm.acme import in_thread

    assert asyncio.run(in_thread(lambda a, b: a + b, 1, 2)) == 3

    def boom() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        asyncio.run(in_thread(boom))
