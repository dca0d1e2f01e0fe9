"""The ACME state on disk and the schedule (C1): the names, addresses, URLs and files an operator passes are checked
with what to do; files are replaced whole with mode 0600; renewal at two thirds of the lifetime; the backoff doubles
up to six hours and survives a restart; one instance at a time orders a name; challenges in flight are readable by
every instance sharing the directory."""

from __future__ import annotations

import datetime
import json
import os
import random
import stat
import threading

import pytest

from privproxy import acme_state
from privproxy.acme_state import Attempts, Store, Stored, challenge_order, due
from tests.certs import Authority

DAY = 86400.0


@pytest.mark.parametrize("raw, name", [("Shop.Example.", "shop.example"), ("www.shop.example", "www.shop.example"),
                                       ("xn--bcher-kva.example", "xn--bcher-kva.example")])
def test_names_are_asked_for_as_the_ca_spells_them(raw, name):
    assert acme_state.check_domain(raw) == name


@pytest.mark.parametrize("raw, says", [
    ("*.shop.example", "a wildcard needs the DNS-01 challenge"),
    ("192.0.2.1", "an address, not a DNS name"),
    ("[2001:db8::1]", "an address, not a DNS name"),
    ("localhost", "not a public DNS name"),
    ("shop_1.example", "not a public DNS name"),
    ("-shop.example", "not a public DNS name"),
    ("shop..example", "not a public DNS name"),
    ("a" * 64 + ".example", "not a public DNS name"),
])
def test_names_the_ca_cannot_validate_are_refused_with_what_to_pass(raw, says):
    with pytest.raises(ValueError, match=says) as e:
        acme_state.check_domain(raw)
    assert "--acme" in str(e.value)


def test_email_directory_challenges_and_ca_file(tmp_path):
    assert acme_state.check_email(" ops@shop.example ") == "ops@shop.example"
    for bad in ("ops", "ops@localhost", "a b@shop.example", "mailto:ops@shop.example"):
        with pytest.raises(ValueError, match="--acme-email"):
            acme_state.check_email(bad)
    assert acme_state.check_directory(acme_state.LETS_ENCRYPT) == acme_state.LETS_ENCRYPT
    with pytest.raises(ValueError, match="https:// URL"):
        acme_state.check_directory("http://ca.example/directory")
    assert acme_state.check_challenges([]) == ("tls-alpn-01", "http-01")
    assert acme_state.check_challenges(["HTTP-01", "http-01"]) == ("http-01",)
    with pytest.raises(ValueError, match="DNS-01 needs your DNS provider"):
        acme_state.check_challenges(["dns-01"])
    assert acme_state.check_ca_file("") == ""
    root = Authority().root_pem(tmp_path / "root.pem")
    assert acme_state.check_ca_file(str(root)) == str(root)
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ValueError, match="no PEM certificate"):
        acme_state.check_ca_file(str(tmp_path / "empty.pem"))
    with pytest.raises(ValueError, match="cannot read it"):
        acme_state.check_ca_file(str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("url, name", [
    (acme_state.LETS_ENCRYPT, "acme-v02.api.letsencrypt.org-directory"),
    (acme_state.LETS_ENCRYPT_STAGING, "acme-staging-v02.api.letsencrypt.org-directory"),
    ("https://localhost:14000/dir", "localhost-14000-dir"),
    ("https://ca.example/acme/../x?y", "ca.example-acme-..-x"),
])
def test_each_acme_server_has_a_directory_of_its_own(url, name):
    assert acme_state.directory_id(url) == name
    assert "/" not in acme_state.directory_id(url)


def test_files_are_replaced_whole_with_mode_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        target = tmp_path / "f"
        acme_state.write_private(target, b"one")
        acme_state.write_private(target, b"two")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary file left


def test_prepare_makes_private_directories_or_says_what_to_do(tmp_path):
    store = Store(tmp_path / "acme", acme_state.LETS_ENCRYPT)
    store.prepare()
    for d in (store.root, store.base, store.base / "certificates", store.base / "challenges", store.base / "locks"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    (tmp_path / "file").write_text("")
    with pytest.raises(acme_state.StateError, match="writable --acme-dir"):
        Store(tmp_path / "file" / "acme", acme_state.LETS_ENCRYPT).prepare()


def test_a_certificate_is_stored_as_key_and_chain_in_one_file(tmp_path):
    store = Store(tmp_path, "https://ca.example/dir")
    store.prepare()
    assert store.read_certificate("shop.example") is None
    ca = Authority()
    issued = ca.issue("shop.example", days=90)
    path = store.write_certificate("shop.example", issued.privkey(), issued.fullchain())
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----") and data.endswith(issued.fullchain())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = store.read_certificate("shop.example")
    assert stored.serial == issued.serial and stored.lifetime == pytest.approx(91 * DAY)
    path.write_bytes(b"cut off")
    assert store.read_certificate("shop.example") is None  # unreadable: ordered anew


def stored(not_before: float, days: float) -> Stored:
    return Stored(None, not_before, not_before + days * DAY, 1)  # type: ignore[arg-type]


def test_renewal_is_due_at_two_thirds_of_the_lifetime():
    assert due(None, Attempts()) == 0.0  # no certificate: now
    assert due(stored(0, 90), Attempts()) == pytest.approx(60 * DAY)  # Let's Encrypt's 90 days: day 60
    assert due(stored(1000, 6), Attempts()) == pytest.approx(1000 + 4 * DAY)  # short-lived certificates too
    assert due(stored(0, 90), Attempts(2, 70 * DAY)) == 70 * DAY  # never before the backoff allows
    assert due(None, Attempts(1, 500.0)) == 500.0


def test_the_backoff_doubles_up_to_six_hours_with_a_little_jitter():
    rng = random.Random(7)
    a, delays, now = Attempts(), [], 1_000_000.0
    for _ in range(10):
        a = a.after_failure(now, "no", "http-01", rng=rng)
        delays.append(a.next_attempt - now)
    nominal = [300, 600, 1200, 2400, 4800, 9600, 19200, 21600, 21600, 21600]
    assert all(n * 0.9 <= d <= n * 1.1 for d, n in zip(delays, nominal, strict=True))
    assert a.failures == 10 and a.error == "no" and a.challenge == "http-01"
    # at most four failed validations an hour from the start: Let's Encrypt allows five per name and account
    first_hour = sum(1 for t in [0, *__import__("itertools").accumulate(delays)] if t < 3600)
    assert first_hour <= 4
    assert Attempts().after_failure(0, "x", "", retry=2, rng=rng).next_attempt == pytest.approx(2, rel=0.11)


def test_the_backoff_is_kept_on_disk_and_cleared_by_a_success(tmp_path):
    store = Store(tmp_path, acme_state.LETS_ENCRYPT)
    store.prepare()
    a = Attempts(3, 1_800_000_000.0, "the CA could not validate", "tls-alpn-01")
    store.write_attempts("shop.example", a)
    path = store.attempts_path("shop.example")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["next_attempt_utc"] == "2027-01-15T08:00:00Z"
    assert Store(tmp_path, acme_state.LETS_ENCRYPT).attempts("shop.example") == a  # after a restart
    store.write_attempts("shop.example", Attempts())
    assert not path.exists() and store.attempts("shop.example") == Attempts()
    path.write_text("{broken")
    assert store.attempts("shop.example") == Attempts()


@pytest.mark.parametrize("allowed, ports, failed, order", [
    (("tls-alpn-01", "http-01"), (443, 80), "", ("tls-alpn-01", "http-01")),
    (("tls-alpn-01", "http-01"), (80,), "", ("http-01", "tls-alpn-01")),  # only port 80 reaches privproxy
    (("tls-alpn-01", "http-01"), (8443,), "", ("tls-alpn-01", "http-01")),
    (("tls-alpn-01", "http-01"), (443, 80), "tls-alpn-01", ("http-01", "tls-alpn-01")),  # the other one next
    (("tls-alpn-01", "http-01"), (80,), "http-01", ("tls-alpn-01", "http-01")),
    (("http-01",), (443,), "http-01", ("http-01",)),  # --acme-challenge http-01: nothing else
])
def test_the_challenge_type_follows_the_ports_and_alternates_after_a_failure(allowed, ports, failed, order):
    assert challenge_order(allowed, ports, failed) == order


def test_the_account_and_its_registration(tmp_path):
    store = Store(tmp_path, "https://ca.example/dir")
    store.prepare()
    assert store.account_key_pem() is None and store.account() is None
    store.write_account_key(b"-----BEGIN PRIVATE KEY-----\n")
    store.write_account("https://ca.example/acct/1", "ops@shop.example")
    doc = store.account()
    assert doc["uri"] == "https://ca.example/acct/1" and doc["email"] == "ops@shop.example"
    assert doc["directory"] == "https://ca.example/dir"
    for f in (store.account_key_path, store.account_path):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_challenges_in_flight_are_shared_through_the_directory(tmp_path):
    a, b = Store(tmp_path, acme_state.LETS_ENCRYPT), Store(tmp_path, acme_state.LETS_ENCRYPT)  # two instances
    a.prepare()
    a.publish_challenge("shop.example", "http-01", "tok_-1", "tok_-1.thumb")
    a.publish_challenge("shop.example", "tls-alpn-01", "tok2", "tok2.thumb")
    assert b.challenge("tok_-1")["key_authorization"] == "tok_-1.thumb"
    assert [d["token"] for d in b.challenges_for("shop.example", "tls-alpn-01")] == ["tok2"]
    assert b.challenges_for("blog.example", "tls-alpn-01") == []
    assert b.challenge("unknown") is None
    assert b.challenge("../../account") is None  # never a path outside the directory
    with pytest.raises(ValueError):
        a.publish_challenge("shop.example", "http-01", "../x", "x")
    a.withdraw_challenge("tok_-1")
    assert b.challenge("tok_-1") is None
    a.withdraw_challenge("tok_-1")  # twice: no error


def test_one_instance_at_a_time_orders_a_name(tmp_path):
    a, b = Store(tmp_path, acme_state.LETS_ENCRYPT), Store(tmp_path, acme_state.LETS_ENCRYPT)
    a.prepare()
    with a.turn("shop.example") as mine:
        assert mine
        with b.turn("shop.example") as theirs:  # another open file: another process's view of the lock
            assert not theirs
        with b.turn("blog.example") as other:
            assert other
    with b.turn("shop.example") as theirs:
        assert theirs
    # waiting for a turn: taken once the holder lets go
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        with a.turn("account"):
            held.set()
            released.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    threading.Timer(0.2, released.set).start()
    with b.turn("account", wait=5) as mine:
        assert mine
    t.join()


def test_stored_dates_are_the_certificates(tmp_path):
    store = Store(tmp_path, acme_state.LETS_ENCRYPT)
    store.prepare()
    issued = Authority().issue("shop.example", days=6)
    store.write_certificate("shop.example", issued.privkey(), issued.fullchain())
    s = store.read_certificate("shop.example")
    assert s.not_after == issued.cert.not_valid_after_utc.timestamp()
    assert s.renew_at() == pytest.approx(s.not_before + (s.not_after - s.not_before) * 2 / 3)
    assert datetime.datetime.fromtimestamp(s.renew_at(), datetime.UTC) < issued.cert.not_valid_after_utc
