"""Certificates: served by SNI through mitmproxy's tlsconfig; a replaced file served from the next look on, a broken one
reported once (after a second look) and counted while the previous certificate stays in service; SIGHUP's forced
re-read; each served certificate's expiry published (C1, C15)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mitmproxy import exceptions
from mitmproxy.addons import tlsconfig
from mitmproxy.test import taddons

from privproxy.metrics import Metrics
from privproxy.mitm import certificates
from privproxy.mitm.certificate_files import Spec
from privproxy.mitm.certificates import Certificates
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Result
from tests.certs import Authority

@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority()


def pair(tmp_path, issued, name: str = "site") -> Spec:
    issued.write(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    return Spec(str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key"))


class Declare:
    """The two options privproxy's Options addon declares."""

    def load(self, loader) -> None:
        loader.add_option("privproxy_certs", Sequence[str], [], "")
        loader.add_option("privproxy_cert_keys", Sequence[str], [], "")


@pytest.fixture
def served(tmp_path, ca):
    """Certificates under taddons with mitmproxy's tlsconfig, as `privproxy run` loads them."""
    shared = SharedState(Metrics())
    addon = Certificates(shared)
    tc = tlsconfig.TlsConfig()
    a, b = ca.issue("shop.example", "*.shop.example"), ca.issue("blog.example")
    spec_a, spec_b = pair(tmp_path, a, "a"), pair(tmp_path, b, "b")
    with taddons.context(tc, Declare(), addon) as tctx:
        tctx.configure(tc, confdir=str(tmp_path / "conf"))
        tctx.configure(addon, privproxy_certs=[spec_a.cert, f"blog.example={spec_b.cert}"],
                       privproxy_cert_keys=[spec_a.key, spec_b.key])
        yield addon, shared, (a, spec_a), (b, spec_b), tctx


def serial(entry) -> int:
    return entry.cert.serial


def test_served_by_sni_exact_wildcard_then_the_first_without_domain(served):
    addon, _, (a, _), (b, _), _ = served
    assert serial(addon.choose("shop.example")) == a.serial
    assert serial(addon.choose("Img.Shop.Example.")) == a.serial  # *.shop.example
    assert serial(addon.choose("blog.example")) == b.serial
    assert serial(addon.choose("unknown.example")) == a.serial and serial(addon.choose(None)) == a.serial


def test_the_chain_file_is_written_once_per_content(served, tmp_path, ca):
    addon, *_ = served
    files = list((tmp_path / "conf" / certificates.CHAIN_DIR).glob("*.pem"))
    assert len(files) == 1  # both certificates share the intermediate
    assert files[0].read_bytes() == ca.intermediate.public_bytes(serialization.Encoding.PEM)
    assert {addon.choose(n).chain_file for n in ("shop.example", "blog.example")} == {files[0]}


def value(shared, result: Result) -> float | None:
    return shared.metrics.registry.get_sample_value("privproxy_certificate_reloads_total", {"result": result})


def test_a_replaced_file_is_served_from_the_next_look_and_counted(served, ca, tmp_path):
    addon, shared, (a, spec_a), (b, _), _ = served
    assert addon.check() == []  # nothing changed
    renewed = ca.issue("shop.example", "*.shop.example")
    renewed.write(tmp_path / "a.crt", tmp_path / "a.key")
    assert addon.check() == [Result.SUCCESS]
    assert serial(addon.choose("shop.example")) == renewed.serial
    assert serial(addon.choose("blog.example")) == b.serial
    assert value(shared, Result.SUCCESS) == 1 and not value(shared, Result.FAILURE)


def test_a_broken_replacement_is_reported_after_a_second_look_and_the_old_one_stays(served, ca, tmp_path, caplog):
    addon, shared, (a, spec_a), _, _ = served
    (tmp_path / "a.key").write_bytes(ca.issue("shop.example").privkey())  # certbot half-way: a new key only
    assert addon.check() == []  # maybe mid-renewal: looked at again before anything is said
    with caplog.at_level(logging.ERROR):
        assert addon.check() == [Result.FAILURE]
    assert serial(addon.choose("shop.example")) == a.serial
    assert value(shared, Result.FAILURE) == 1
    (message,) = [r for r in caplog.records if "still serving the previous certificate" in r.getMessage()]
    assert spec_a.key in message.getMessage() and "does not belong" in message.getMessage()
    assert addon.check() == []  # reported once, not at every look
    assert value(shared, Result.FAILURE) == 1
    renewed = ca.issue("shop.example")
    renewed.write(tmp_path / "a.crt", tmp_path / "a.key")
    assert addon.check() == [Result.SUCCESS] and serial(addon.choose("shop.example")) == renewed.serial


def test_a_half_written_renewal_caught_once_is_not_reported(served, ca, tmp_path):
    addon, shared, *_ = served
    renewed = ca.issue("shop.example")
    (tmp_path / "a.crt").write_bytes(renewed.fullchain())  # the chain first...
    assert addon.check() == []
    (tmp_path / "a.key").write_bytes(renewed.privkey())  # ...then the key
    assert addon.check() == [Result.SUCCESS] and not value(shared, Result.FAILURE)


def test_force_rereads_unchanged_files_and_reports_at_once(served, ca, tmp_path):
    addon, shared, *_ = served
    assert addon.check(force=True) == [Result.SUCCESS, Result.SUCCESS]  # SIGHUP: every file, changed or not
    (tmp_path / "b.crt").write_bytes(b"")  # an empty Secret key
    assert sorted(addon.check(force=True)) == [Result.FAILURE, Result.SUCCESS]
    assert value(shared, Result.FAILURE) == 1


def test_an_expired_replacement_keeps_the_current_one(served, ca, tmp_path):
    addon, shared, (a, _), *_ = served
    ca.issue("shop.example", expired=True).write(tmp_path / "a.crt", tmp_path / "a.key")
    assert addon.check(force=True)[0] == Result.FAILURE
    assert serial(addon.choose("shop.example")) == a.serial


def test_a_bad_file_at_start_is_an_options_error(tmp_path, ca):
    spec = pair(tmp_path, ca.issue("shop.example"))
    (tmp_path / "wrong.key").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    addon = Certificates(SharedState(Metrics()))
    with taddons.context(Declare(), addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="does not belong"):
            tctx.configure(addon, privproxy_certs=[spec.cert], privproxy_cert_keys=[str(tmp_path / "wrong.key")])
        with pytest.raises(exceptions.OptionsError, match="more key files"):
            tctx.configure(addon, privproxy_certs=[], privproxy_cert_keys=[spec.key])


def test_without_certificates_mitmproxy_chooses(tmp_path):
    addon = Certificates(SharedState(Metrics()))
    tc = tlsconfig.TlsConfig()
    with taddons.context(tc, Declare(), addon) as tctx:
        tctx.configure(tc, confdir=str(tmp_path / "conf"))
        tctx.configure(addon, privproxy_certs=[])
        assert addon.choose("shop.example") is None
        assert "get_cert" not in vars(tc)


def test_each_served_certificates_expiry_is_published_and_follows_reloads(served, ca, tmp_path):
    addon, shared, (a, _), (b, _), _ = served

    def expiry(name: str) -> float | None:
        return shared.metrics.registry.get_sample_value("privproxy_certificate_expiry_timestamp_seconds",
                                                        {"certificate": name})

    assert expiry("shop.example") == a.cert.not_valid_after_utc.timestamp()
    assert expiry("blog.example") == b.cert.not_valid_after_utc.timestamp()
    renamed = ca.issue("news.example", days=30)  # the blog's file now holds another site's certificate
    renamed.write(tmp_path / "b.crt", tmp_path / "b.key")
    assert addon.check() == [Result.SUCCESS]
    assert expiry("news.example") == renamed.cert.not_valid_after_utc.timestamp()
    assert expiry("blog.example") is None  # no longer served: no alert about it


def test_an_expired_certificate_at_start_is_served_with_a_warning(tmp_path, ca, caplog):
    # mitmproxy ends a start that logs an error; a proxy that runs picks up the renewal by itself
    spec = pair(tmp_path, ca.issue("shop.example", expired=True))
    addon = Certificates(SharedState(Metrics()))
    with taddons.context(Declare(), addon) as tctx, caplog.at_level(logging.WARNING):
        tctx.configure(addon, privproxy_certs=[spec.cert], privproxy_cert_keys=[spec.key])
        assert addon.choose("shop.example") is not None
    (record,) = [r for r in caplog.records if "expired on" in r.getMessage()]
    assert record.levelno == logging.WARNING and spec.cert in record.getMessage()
