import bz2
import errno
import gzip
import hashlib
import json
import lzma
import os
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from privproxy import dsr, pseudonyms
from privproxy.pseudonyms import Pseudonymizer
from privproxy.access_log.lock import TryLock
from privproxy.access_log.sink import Sink, pending_chunks
from tests.helpers import privproxy_exe
from tests.unit.test_sink import held_elsewhere


def line(member: str, i: int) -> bytes:
    return orjson.dumps({"member": member, "consent_key": "k1", "v": 1, "request_id": f"{member}-{i}",
                         "path": f"/p/{i}", "ts": f"2026-11-2{i % 3}T00:00:00.000Z"}) + b"\n"


@pytest.fixture
def logs(tmp_path):
    (tmp_path / "linked-2026-11-20.jsonl").write_bytes(line("alice", 1) + line("bob", 2))
    (tmp_path / "linked-2026-11-21.1.jsonl").write_bytes(line("bob", 3))
    (tmp_path / "linked.jsonl").write_bytes(line("alice", 4) + b"not json alice\n" + line("carol", 5)
                                            + b'{"member":"alice", broken\n')
    (tmp_path / "access.jsonl").write_bytes(b'{"path":"/p/1","client":"192.0.2.0"}\n')
    return tmp_path


def test_export_finds_every_record_of_the_member_in_rotated_files_too(logs):
    rep = dsr.export(logs, "alice")
    assert sorted(r["request_id"] for r in rep.records) == ["alice-1", "alice-4"]
    assert rep.files == ["linked-2026-11-20.jsonl", "linked.jsonl"]
    assert dsr.export(logs, "nobody").records == []


def test_erase_removes_only_that_member_and_leaves_other_files_alone(logs):
    access = (logs / "access.jsonl").read_bytes()
    rep = dsr.erase(logs, "alice")
    assert rep.removed == 3  # two records and the damaged line that names her
    text = b"".join(p.read_bytes() for p in dsr.linked_files(logs))
    assert b"alice" not in text.replace(b"not json alice", b"")
    assert b"not json alice" in text  # a damaged line without her id stays (it is not hers to judge)
    assert text.count(b'"member":"bob"') == 2 and text.count(b'"member":"carol"') == 1
    assert (logs / "access.jsonl").read_bytes() == access
    assert dsr.erase(logs, "alice").removed == 0


SECRET = b"dsr-test-secret-0123456789"


def secret_key(secret: bytes = SECRET, now: float = 1_800_000_000.0) -> dsr.AuditKey:
    return dsr.audit_key(Pseudonymizer(pseudonyms.Settings(), secret=secret, clock=lambda: now))


def test_each_request_leaves_an_audit_line_naming_the_member_by_a_keyed_hash_only(logs):
    key = secret_key()
    dsr.export(logs, "alice", now=1_800_000_000, key=key)
    dsr.erase(logs, "alice", now=1_800_000_001, key=key)
    text = (logs / dsr.AUDIT_FILE).read_text()
    audit = [orjson.loads(x) for x in text.splitlines()]
    assert [a["action"] for a in audit] == ["export", "erase"]
    assert audit[1]["records"] == 3 and audit[0]["records"] == 2 and "alice" not in text
    assert audit[0]["log_dirs"] == [str(logs)] and audit[0]["result"] == "ok"
    # HMAC under a key derived from the deployment's secret, never a plain hash that guessing reverses
    assert audit[0]["member_hmac"] == audit[1]["member_hmac"] == key.member("alice")
    assert audit[0]["member_key"] == "secret:daily:20833"
    assert hashlib.sha256(b"alice").hexdigest() not in text and "member_sha256" not in text
    assert secret_key(b"another-secret-0123456789").member("alice") != key.member("alice")
    assert key.member("alice") != key.member("alice2")


def test_the_audit_key_is_its_own_destination_and_absent_without_a_secret():
    pz = Pseudonymizer(pseudonyms.Settings(), secret=SECRET, clock=lambda: 1_800_000_000.0)
    key = dsr.audit_key(pz)
    assert key.key == pseudonyms.destination_key(pz.key(), dsr.AUDIT_DESTINATION)
    assert key.key not in {pz.key(), pz.for_destination("log").key(), pz.for_destination("ga4").key()}
    ephemeral = Pseudonymizer(pseudonyms.Settings(secret_env="PRIVPROXY_TEST_UNSET_SECRET"))
    assert dsr.audit_key(ephemeral) is dsr.NO_KEY and dsr.NO_KEY.member("alice") is None


def test_without_a_key_the_audit_line_names_no_member(logs):
    dsr.export(logs, "alice")
    audit = orjson.loads((logs / dsr.AUDIT_FILE).read_bytes())
    assert audit["member_hmac"] is None and audit["member_key"] == "none" and audit["records"] == 2


def test_audit_lines_are_found_again_with_the_secret_even_in_a_later_period(logs, monkeypatch):
    monkeypatch.setenv("PRIVPROXY_SECRET", SECRET.decode())
    dsr.erase(logs, "alice", now=1_800_000_000, key=secret_key())
    dsr.erase(logs, "bob", now=1_800_000_000, key=secret_key(now=1_800_000_000 + 5 * 86400))
    dsr.export(logs, "alice")  # no key: counted as unchecked
    settings = pseudonyms.Settings()
    mine, unchecked = dsr.audit_matches(logs / dsr.AUDIT_FILE, "alice", settings)
    assert [a["action"] for a in mine] == ["erase"] and unchecked == 1
    mine, _ = dsr.audit_matches(logs / dsr.AUDIT_FILE, "bob", settings)
    assert len(mine) == 1 and mine[0]["member_key"] == "secret:daily:20838"
    monkeypatch.setenv("PRIVPROXY_SECRET", "not-the-secret-0123456789")
    assert dsr.audit_matches(logs / dsr.AUDIT_FILE, "alice", settings)[0] == []


def test_with_a_key_file_only_periods_the_file_still_reaches_can_be_checked(tmp_path):
    keys = tmp_path / "keys.json"
    day = 86400
    pseudonyms.write_key_file(keys, pseudonyms.KeyFile("daily:20833", bytes(range(32))))
    settings = pseudonyms.Settings(key_file=str(keys))
    key = dsr.audit_key(Pseudonymizer(settings, clock=lambda: 20833 * day + 5))
    assert key.source == "key_file:daily:20833"
    assert dsr.audit_key_for(settings, key.source) == key
    # rotated on: the file no longer yields that period's key, so nobody can tie the line to a member
    pseudonyms.write_key_file(keys, pseudonyms.KeyFile("daily:20835", pseudonyms.advance(
        bytes(range(32)), "daily:20833", "daily", 20835)[1]))
    assert dsr.audit_key_for(settings, key.source) is None
    assert dsr.audit_key_for(settings, "secret:daily:20833") is None and dsr.audit_key_for(settings, "x") is None


def test_several_log_directories_are_one_request_with_one_audit_line(logs, tmp_path_factory):
    other = tmp_path_factory.mktemp("web-2")
    (other / "linked.jsonl").write_bytes(line("alice", 7) + line("dave", 8))
    (other / "linked-2026-11-19.jsonl.gz").write_bytes(gzip.compress(line("alice", 9)))
    rep = dsr.export([logs, other, logs], "alice", key=secret_key())  # a directory named twice is read once
    assert sorted(r["request_id"] for r in rep.records) == ["alice-1", "alice-4", "alice-7", "alice-9"]
    assert rep.files == [str(logs / "linked-2026-11-20.jsonl"), str(logs / "linked.jsonl"),
                         str(other / "linked-2026-11-19.jsonl.gz"), str(other / "linked.jsonl")]
    audit_file = tmp_path_factory.mktemp("audit") / "dsr-audit.jsonl"
    rep = dsr.erase([logs, other], "alice", key=secret_key(), audit_file=audit_file)
    assert rep.removed == 5
    assert dsr.export([logs, other], "alice").records == []
    (audit,) = [orjson.loads(x) for x in audit_file.read_bytes().splitlines()]
    assert audit["action"] == "erase" and audit["records"] == 5 and audit["log_dirs"] == [str(logs), str(other)]
    assert not (other / dsr.AUDIT_FILE).exists()
    assert b"dave" in (other / "linked.jsonl").read_bytes()


def test_every_directory_is_locked_for_the_whole_request(logs, tmp_path_factory):
    from privproxy.access_log import lock

    other = tmp_path_factory.mktemp("web-2")
    (other / "linked.jsonl").write_bytes(line("alice", 7))
    with lock.hold(other / "linked.jsonl"):
        with pytest.raises(dsr.DsrError, match="held by another process"):
            dsr.erase([logs, other], "alice", timeout=0.05)
    assert b"alice" in (logs / "linked.jsonl").read_bytes()  # nothing erased anywhere: all or nothing started
    audit = orjson.loads((logs / dsr.AUDIT_FILE).read_bytes())
    assert audit["result"] == "failed" and audit["records"] == 0


def test_the_cli_takes_patterns_and_keys_the_audit_with_the_proxys_secret(logs, tmp_path_factory, capsys,
                                                                          monkeypatch):
    from privproxy.cli import main

    root = tmp_path_factory.mktemp("pods")
    for pod, n in (("privproxy-7d9f-a", 1), ("privproxy-7d9f-b", 2)):
        (root / pod).mkdir()
        (root / pod / "linked.jsonl").write_bytes(line("erin", n))
    (root / "dsr-audit.jsonl").write_bytes(b"")  # a file the pattern also matches: not a log directory
    monkeypatch.chdir(root)  # no ./filters.yaml: the built-in settings, which read PRIVPROXY_SECRET
    monkeypatch.setenv("PRIVPROXY_SECRET", SECRET.decode())
    args = ["--member", "erin", "--log-dir", str(root / "*"), "--audit-file", str(root / "dsr-audit.jsonl")]
    assert main(["dsr", "export", *args]) == 0
    assert len(json.loads(capsys.readouterr().out)["records"]) == 2
    assert main(["dsr", "erase", *args]) == 0
    assert "erased 2 linked records of erin from 2 file(s)" in capsys.readouterr().out
    assert main(["dsr", "audit", *args]) == 0
    found = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [a["action"] for a in found] == ["export", "erase"] and all(a["member_hmac"] for a in found)
    monkeypatch.delenv("PRIVPROXY_SECRET")
    assert main(["dsr", "export", *args]) == 0
    err = capsys.readouterr().err
    assert "PRIVPROXY_SECRET" in err and "names no member" in err
    assert main(["dsr", "export", "--member", "erin", "--log-dir", str(root / "nothing-*")]) == 1
    assert "matches no directory" in capsys.readouterr().err


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(dsr.DsrError):
        dsr.erase(tmp_path, "a b")
    with pytest.raises(dsr.DsrError):
        dsr.export(tmp_path / "missing", "alice")


def test_erase_while_the_proxy_writes_loses_nothing_of_other_members(tmp_path):
    """A writer appends records of two members through the proxy's sink while erase runs again and again:
    every record of bob survives, and no record of alice written before the last erase does."""
    path = tmp_path / "linked.jsonl"
    sink = Sink(path, "linked", locked=True)
    written = {"alice": 0, "bob": 0}
    stop = threading.Event()

    def writer():
        i = 0
        deadline = time.monotonic() + 10
        while not stop.is_set() and i < 200_000 and time.monotonic() < deadline:
            member = "alice" if i % 2 else "bob"
            sink.write(line(member, i))
            written[member] += 1
            if i % 50 == 0:
                sink.flush()
            i += 1
        sink.close()

    t = threading.Thread(target=writer)
    t.start()
    erased = 0
    for _ in range(30):
        erased += dsr.erase(tmp_path, "alice").removed
        time.sleep(0.005)
    stop.set()
    t.join(timeout=30)
    assert not t.is_alive()
    erased += dsr.erase(tmp_path, "alice").removed
    text = path.read_bytes()
    assert text.count(b'"member":"bob"') == written["bob"] > 100
    assert b'"member":"alice"' not in text and erased == written["alice"]
    assert all(ln.endswith(b"}") for ln in text.splitlines())  # no split or interleaved records


# --- every rotated and compressed linked file, or no success ---------------------------------------------

def pack(kind: str, data: bytes) -> bytes:
    return {"plain": lambda d: d, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind](data)


def unpack(data: bytes) -> tuple[str, bytes]:
    for kind, magic, fn in (("gzip", b"\x1f\x8b", gzip.decompress), ("bzip2", b"BZh", bz2.decompress),
                            ("xz", b"\xfd7zXZ\x00", lzma.decompress)):
        if data.startswith(magic):
            return kind, fn(data)
    return "plain", data


NAME_FORMS = [  # logrotate (numbered, dateext in several dateformats, compressext or none) and privproxy's own
    ("linked.jsonl.1", "plain"), ("linked.jsonl.2.gz", "gzip"), ("linked.jsonl-20261128", "plain"),
    ("linked.jsonl-20261128.gz", "gzip"), ("linked.jsonl-2026-11-28", "plain"), ("linked.jsonl.2026-11-28", "plain"),
    ("linked.jsonl-1764288000.xz", "xz"), ("linked.jsonl.3.bz2", "bzip2"), ("linked.jsonl-20261128.xz", "xz"),
    ("linked.jsonl.4", "gzip"),  # compressed, no extension (compressext "")
    ("linked-2026-11-28.jsonl.gz", "gzip"), ("linked-2026-11-28.1.jsonl.bz2", "bzip2"),
    ("linked-2026-11-27.jsonl", "plain"), ("linked.jsonl.old", "plain"),
]


@pytest.mark.parametrize(("name", "kind"), NAME_FORMS)
def test_export_and_erase_cover_every_rotated_and_compressed_name(tmp_path, name, kind):
    other = line("bob", 1) + line("carol", 2)
    (tmp_path / name).write_bytes(pack(kind, line("alice", 1) + other[:len(line("bob", 1))] + line("alice", 2)
                                       + other[len(line("bob", 1)):]))
    os.chmod(tmp_path / name, 0o604)
    os.utime(tmp_path / name, (1_700_000_000, 1_700_000_000))
    (tmp_path / "linked.jsonl").write_bytes(line("alice", 3))

    rep = dsr.export(tmp_path, "alice")
    assert sorted(r["request_id"] for r in rep.records) == ["alice-1", "alice-2", "alice-3"]
    assert rep.files == [name, "linked.jsonl"]

    rep = dsr.erase(tmp_path, "alice")
    assert rep.removed == 3 and rep.files == [name, "linked.jsonl"]
    got_kind, content = unpack((tmp_path / name).read_bytes())
    assert got_kind == kind and content == other  # rewritten compressed as it was, in the same order
    st = (tmp_path / name).stat()
    assert st.st_mode & 0o7777 == 0o604 and st.st_mtime == 1_700_000_000
    assert (tmp_path / "linked.jsonl").read_bytes() == b""
    assert dsr.export(tmp_path, "alice").records == []
    assert [p.name for p in tmp_path.iterdir() if ".erase-" in p.name] == []


def test_multi_member_gzip_and_multi_stream_bzip2_are_read_whole(tmp_path):
    (tmp_path / "linked.jsonl.1.gz").write_bytes(gzip.compress(line("alice", 1)) + gzip.compress(line("alice", 2)))
    (tmp_path / "linked.jsonl.2.bz2").write_bytes(bz2.compress(line("bob", 1)) + bz2.compress(line("alice", 3)))
    assert len(dsr.export(tmp_path, "alice").records) == 3
    assert dsr.erase(tmp_path, "alice").removed == 3
    assert gzip.decompress((tmp_path / "linked.jsonl.1.gz").read_bytes()) == b""
    assert bz2.decompress((tmp_path / "linked.jsonl.2.bz2").read_bytes()) == line("bob", 1)


def test_a_file_without_the_member_is_not_rewritten(tmp_path):
    (tmp_path / "linked.jsonl.1.gz").write_bytes(gzip.compress(line("bob", 1)))
    before = (tmp_path / "linked.jsonl.1.gz").stat().st_ino
    assert dsr.erase(tmp_path, "alice").removed == 0
    assert (tmp_path / "linked.jsonl.1.gz").stat().st_ino == before


def test_a_last_line_cut_short_is_judged_too(tmp_path):
    """Under the lock nothing is mid-write: a line without its newline is a crash's leftover."""
    (tmp_path / "linked.jsonl.1").write_bytes(line("bob", 1) + line("alice", 2)[:-1])
    (tmp_path / "linked.jsonl.2").write_bytes(line("bob", 3) + line("alice", 4)[:30])
    assert [r["request_id"] for r in dsr.export(tmp_path, "alice").records] == ["alice-2"]
    assert dsr.erase(tmp_path, "alice").removed == 2
    assert (tmp_path / "linked.jsonl.1").read_bytes() == line("bob", 1)
    assert (tmp_path / "linked.jsonl.2").read_bytes() == line("bob", 3)


REFUSED = {
    "linked.jsonl.3.zst": (b"\x28\xb5\x2f\xfd\x24\x05\x29\x00\x00hello", "zstd -d --rm linked.jsonl.3.zst"),
    "linked.jsonl.4.lz4": (b"\x04\x22\x4d\x18\x64\x40\xa7\x00\x00\x00", "lz4 -d"),
    "linked.jsonl-20261128.gz": (gzip.compress(b'{"member":"alice"}\n' * 50)[:-12], "truncated gzip"),
    "linked.jsonl.2.gz": (b"\x1f\x8b\x08\x00" + bytes(range(200)), "corrupt"),
    "linked.jsonl.5.gz": (gzip.compress(line("alice", 9)) + b"trailing garbage", "corrupt"),
    "linked.jsonl.6.xz": (lzma.compress(line("alice", 9))[:-20], "corrupt"),
    "linked.jsonl.7.gz": (line("alice", 9), "named as gzip-compressed but its content is not"),
    "linked.jsonl.8": (bytes(range(256)) * 4, "binary content"),  # a compression dsr does not know by its bytes
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_file_that_cannot_be_read_fails_the_request_naming_it(tmp_path, name):
    data, why = REFUSED[name]
    (tmp_path / name).write_bytes(data)
    (tmp_path / "linked.jsonl").write_bytes(line("alice", 1) + line("bob", 2))
    with pytest.raises(dsr.Incomplete) as e:
        dsr.export(tmp_path, "alice")
    assert e.value.report.failed[0][0] == name and why in str(e.value) and name in str(e.value)
    assert "nothing was exported" in str(e.value)
    with pytest.raises(dsr.Incomplete) as e:
        dsr.erase(tmp_path, "alice")
    assert e.value.report.removed == 1 and "run erase again" in str(e.value)  # the readable files are erased
    assert (tmp_path / "linked.jsonl").read_bytes() == line("bob", 2)
    assert (tmp_path / name).read_bytes() == data  # the unreadable one is left exactly as it was
    audit = [orjson.loads(x) for x in (tmp_path / dsr.AUDIT_FILE).read_bytes().splitlines()]
    assert [(a["action"], a["result"], a["records"]) for a in audit] == [("export", "incomplete", 0),
                                                                       ("erase", "incomplete", 1)]
    assert all(a["failed"][0]["file"] == name for a in audit) and audit[0]["files"] == []
    assert audit[1]["files"] == ["linked.jsonl"]


def test_an_unreadable_file_fails_the_request_with_what_to_do(tmp_path, monkeypatch):
    target = tmp_path / "linked.jsonl.1"
    target.write_bytes(line("alice", 1))
    target.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the kernel's answer what it is for the proxy's user
        real_open = os.open

        def denied(path, flags, *a, **kw):
            if Path(path) == target:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(os, "open", denied)
    with pytest.raises(dsr.Incomplete) as e:
        dsr.erase(tmp_path, "alice")
    assert "linked.jsonl.1: permission denied — run dsr as the user" in str(e.value)
    audit = orjson.loads((tmp_path / dsr.AUDIT_FILE).read_bytes())
    assert audit["result"] == "incomplete" and audit["failed"][0]["file"] == "linked.jsonl.1"


def test_a_directory_named_like_the_log_fails_the_request(tmp_path):
    (tmp_path / "linked-old").mkdir()
    with pytest.raises(dsr.Incomplete, match="linked-old: not a regular file"):
        dsr.export(tmp_path, "alice")


def test_the_cli_exits_1_prints_no_export_and_names_each_file(tmp_path, capsys):
    from privproxy.cli import main

    (tmp_path / "linked.jsonl").write_bytes(line("alice", 1))
    (tmp_path / "linked.jsonl.2.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 16)
    (tmp_path / "linked.jsonl.3.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    out = tmp_path / "x.json"
    assert main(["dsr", "export", "--member", "alice", "--log-dir", str(tmp_path), "-o", str(out)]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and not out.exists()
    assert "linked.jsonl.2.zst: zstd-compressed" in cap.err and "linked.jsonl.3.gz: corrupt" in cap.err
    assert main(["dsr", "erase", "--member", "alice", "--log-dir", str(tmp_path)]) == 1
    cap = capsys.readouterr()
    assert "1 records were erased" in cap.err and "linked.jsonl.2.zst" in cap.err and cap.out == ""
    (tmp_path / "linked.jsonl.2.zst").unlink()
    (tmp_path / "linked.jsonl.3.gz").unlink()
    assert main(["dsr", "erase", "--member", "alice", "--log-dir", str(tmp_path)]) == 0


def test_a_lock_timeout_fails_and_is_audited(tmp_path):
    from privproxy.access_log import lock

    with lock.hold(tmp_path / "linked.jsonl"):
        with pytest.raises(dsr.DsrError, match="held by another process"):
            dsr.erase(tmp_path, "alice", timeout=0.05)
    audit = orjson.loads((tmp_path / dsr.AUDIT_FILE).read_bytes())
    assert audit["result"] == "failed" and audit["records"] == 0 and "held" in audit["error"]


# --- records the proxy set aside while an erase held the lock --------------------------------------------

def test_chunks_set_aside_at_close_during_an_erase_are_exported_erased_and_folded(tmp_path):
    log = tmp_path / "linked.jsonl"
    s = Sink(log, "linked", locked=True, close_wait=0.2)
    with held_elsewhere(log, 30):
        for i in range(10):
            s.write(line("alice" if i % 2 else "bob", i))
        s.close()
    [chunk] = pending_chunks(log)
    assert len(dsr.export(tmp_path, "alice").records) == 5 and chunk.name in dsr.export(tmp_path, "bob").files
    assert dsr.erase(tmp_path, "alice").removed == 5
    nxt = Sink(log, "linked", locked=True)  # the proxy's next start folds the chunk in
    nxt.write(line("bob", 99))
    nxt.close()
    assert pending_chunks(log) == [] and b'"alice"' not in log.read_bytes()
    assert log.read_bytes().count(b'"member":"bob"') == 6


def test_a_chunk_being_written_is_waited_for_never_read_half(tmp_path):
    from privproxy.access_log import lock

    fd = lock.create_locked(tmp_path / "linked.jsonl.pending-7-7")
    os.write(fd, line("alice", 1)[:20])

    def finish():
        time.sleep(0.3)
        os.write(fd, line("alice", 1)[20:] + line("alice", 2))
        os.close(fd)

    t = threading.Thread(target=finish)
    t.start()
    assert len(dsr.export(tmp_path, "alice").records) == 2
    t.join()


def test_close_during_a_real_erase_in_another_process_loses_nothing(tmp_path):
    """`privproxy dsr erase` rewrites a large compressed file; the proxy's sink closes meanwhile."""
    big = b"".join(line("alice" if i % 2 else "bob", i) for i in range(150_000))
    (tmp_path / "linked.jsonl.1.gz").write_bytes(gzip.compress(big, 1))
    log = tmp_path / "linked.jsonl"
    erase = subprocess.Popen([*privproxy_exe(), "dsr", "erase", "--member", "alice", "--log-dir", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    probe = TryLock(log)
    deadline = time.monotonic() + 30
    while probe.acquire():  # until the erase holds the lock
        probe.release()
        assert time.monotonic() < deadline and erase.poll() is None
        time.sleep(0.005)
    probe.close()
    s = Sink(log, "linked", locked=True, close_wait=0.05)
    for i in range(100):
        s.write(line("carol", i))
    s.close()
    assert s.dropped == 0 and s.set_aside == 100  # the erase still held the lock
    out, err = erase.communicate(timeout=60)
    assert erase.returncode == 0, err
    nxt = Sink(log, "linked", locked=True)
    nxt.write(line("carol", 100))
    nxt.close()
    assert log.read_bytes().count(b'"member":"carol"') == 101 and pending_chunks(log) == []
    assert gzip.decompress((tmp_path / "linked.jsonl.1.gz").read_bytes()).count(b'"member":"bob"') == 75_000
