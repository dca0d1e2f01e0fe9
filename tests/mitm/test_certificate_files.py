"""certificate_files: certbot's and cert-manager's files as they are, and one combined PEM; every file that cannot be
served named with what to do; a rewrite, a rename and a symlink swap each seen as a change (C1)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from privproxy.mitm import certificate_files
from privproxy.mitm.certificate_files import CertificateError, Spec, read
from tests.certs import Authority

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority()


def pair(tmp_path, issued, name: str = "site") -> Spec:
    issued.write(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    return Spec(str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key"))


def test_spec_parses_domain_and_expands_home(monkeypatch):
    monkeypatch.setenv("HOME", "/home/op")
    assert Spec.parse("Shop.Example.=~/tls.crt", "~/tls.key") == Spec("/home/op/tls.crt", "/home/op/tls.key",
                                                                       "shop.example")
    assert Spec.parse("/etc/site.pem") == Spec("/etc/site.pem", "", "")
    assert str(Spec("/a.crt", "/a.key", "x.example")) == "--cert x.example=/a.crt --key /a.key"


def test_certbot_pair_combined_files_and_leaf_anywhere_in_the_chain(tmp_path, ca):
    issued = ca.issue("shop.example", "www.shop.example")
    s = read(pair(tmp_path, issued), NOW)
    assert s.cert == issued.cert and s.intermediates == (ca.intermediate,)
    assert s.names == ("shop.example", "www.shop.example") and s.covers("www.shop.example")
    for order in (issued.privkey() + issued.fullchain(), issued.fullchain() + issued.privkey()):
        (tmp_path / "combined.pem").write_bytes(order)
        assert read(Spec(str(tmp_path / "combined.pem")), NOW).cert == issued.cert
    # some CAs deliver the bundle first: the certificate of the key is the leaf wherever it stands
    inter = ca.intermediate.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "bundle.crt").write_bytes(inter + issued.cert.public_bytes(serialization.Encoding.PEM))
    s = read(Spec(str(tmp_path / "bundle.crt"), str(tmp_path / "site.key")), NOW)
    assert s.cert == issued.cert and s.intermediates == (ca.intermediate,)


def broken_cases(tmp_path, ca) -> dict[str, tuple[Spec, str]]:
    issued, other = ca.issue("shop.example"), ca.issue("shop.example")
    good = pair(tmp_path, issued)
    (tmp_path / "other.key").write_bytes(other.privkey())
    (tmp_path / "chain-only.pem").write_bytes(issued.fullchain())
    (tmp_path / "garbage.crt").write_bytes(b"not a certificate\n")
    (tmp_path / "cut.key").write_bytes(issued.privkey()[:60] + b"\n-----END PRIVATE KEY-----\n")
    (tmp_path / "encrypted.key").write_bytes(issued.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    (tmp_path / "dir").mkdir()
    return {
        "missing": (Spec(str(tmp_path / "nope.crt"), good.key), "does not exist"),
        "directory": (Spec(str(tmp_path / "dir"), good.key), "a directory, not a certificate file"),
        "not pem": (Spec(str(tmp_path / "garbage.crt"), good.key), "no PEM certificate in it"),
        "no key in combined": (Spec(str(tmp_path / "chain-only.pem")), "name the key file with --key"),
        "key of another": (Spec(good.cert, str(tmp_path / "other.key")), "does not belong to the certificate"),
        "encrypted key": (Spec(good.cert, str(tmp_path / "encrypted.key")), "the private key is encrypted"),
        "cut short": (Spec(good.cert, str(tmp_path / "cut.key")), "cannot be read"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "not pem", "no key in combined", "key of another",
                                  "encrypted key", "cut short"])
def test_unservable_files_name_the_file_and_what_to_do(tmp_path, ca, case):
    spec, says = broken_cases(tmp_path, ca)[case]
    with pytest.raises(CertificateError, match=says) as e:
        read(spec, NOW)
    assert (spec.key if case in ("key of another", "encrypted key", "cut short") else spec.cert) in str(e.value)
    assert " — " in str(e.value)  # what to do


def test_an_unreadable_file_says_who_must_read_it(tmp_path, ca, monkeypatch):
    spec = pair(tmp_path, ca.issue("shop.example"))
    read_bytes = Path.read_bytes

    def denied(self: Path) -> bytes:  # mode 0600 root:root as seen by privproxy's user (tests may run as root)
        if str(self) == spec.key:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(CertificateError, match="may not read this private key file — give it read access"):
        read(spec, NOW)


def test_an_expired_replacement_is_refused_but_an_expired_start_is_served(tmp_path, ca):
    spec = pair(tmp_path, ca.issue("shop.example", expired=True))
    assert read(spec, NOW).expires < NOW  # at start: served, with an error logged (browsers refuse it)
    with pytest.raises(CertificateError, match="expired on .* — renew it"):
        read(spec, NOW, replacing=True)


def test_stamp_sees_rewrites_renames_and_symlink_swaps(tmp_path, ca):
    a, b = ca.issue("shop.example"), ca.issue("shop.example")
    spec = pair(tmp_path, a)
    first = certificate_files.stamp(spec)
    b.write(tmp_path / "new.crt", tmp_path / "new.key")
    os.replace(tmp_path / "new.crt", spec.cert)
    assert certificate_files.stamp(spec) != first
    link = tmp_path / "link.crt"
    link.symlink_to("site.crt")
    linked = Spec(str(link), spec.key)
    before = certificate_files.stamp(linked)
    (tmp_path / "other.crt").write_bytes(a.fullchain())
    (tmp_path / "tmp-link").symlink_to("other.crt")
    os.replace(tmp_path / "tmp-link", link)
    assert certificate_files.stamp(linked) != before
    assert certificate_files.stamp(Spec(str(tmp_path / "gone.crt"))) == (None,)
