import os

from privproxy.consent import revocations
from privproxy.consent.revocations import ALWAYS, Revocations


def test_parse_lines_times_and_comments():
    got = revocations.parse("# withdrawn\nalice\nbob 1700000000\ncarol 2026-01-01T00:00:00Z  # by support\n"
                            "dave not-a-time\nno/such/id\n\nbob 1600000000\n")
    # An unreadable time revokes every token of the member (the stricter reading); the later cutoff wins.
    assert got == {"alice": ALWAYS, "bob": 1700000000, "carol": 1767225600, "dave": ALWAYS}


def test_tokens_issued_before_the_cutoff_are_revoked_later_ones_not(tmp_path):
    f = tmp_path / "revoked.txt"
    f.write_text("bob 1000\n")
    clock = [0.0]
    r = Revocations(str(f), clock=lambda: clock[0])
    assert r.revoked("bob", 999) and r.revoked("bob", 1000) and not r.revoked("bob", 1001)
    assert not r.revoked("alice", 1)


def test_file_changes_are_picked_up_within_a_second(tmp_path):
    f = tmp_path / "revoked.txt"
    clock = [0.0]
    r = Revocations(str(f), clock=lambda: clock[0])
    assert not r.revoked("alice", 5)  # no file yet: nobody withdrew
    revocations.append(f, "alice", 10)
    assert not r.revoked("alice", 5)  # checked at most once a second
    clock[0] = 1.5
    assert r.revoked("alice", 5) and not r.revoked("alice", 11)


def test_unreadable_file_refuses_everyone(tmp_path):
    f = tmp_path / "revoked.txt"
    f.write_bytes(b"\xff\xfe not utf-8")
    r = Revocations(str(f), clock=lambda: 0.0)
    assert r.revoked("anyone", 1) and not r.readable()


def test_unreadable_permissions_refuse_everyone(tmp_path):
    if os.geteuid() == 0:
        return  # root reads anything; the UTF-8 case above covers the fail-closed path
    f = tmp_path / "revoked.txt"
    f.write_text("x\n")
    f.chmod(0)
    assert Revocations(str(f), clock=lambda: 0.0).revoked("anyone", 1)


def test_append_refuses_bad_member_ids(tmp_path):
    import pytest
    with pytest.raises(ValueError):
        revocations.append(tmp_path / "r.txt", "a b", 1)
    assert not (tmp_path / "r.txt").exists()
