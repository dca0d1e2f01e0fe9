import threading
import time

import orjson
import pytest

from privproxy import dsr
from privproxy.access_log.sink import Sink


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


def test_each_request_leaves_an_audit_line_without_the_member_id(logs):
    dsr.export(logs, "alice", now=1_800_000_000)
    dsr.erase(logs, "alice", now=1_800_000_001)
    audit = [orjson.loads(x) for x in (logs / dsr.AUDIT_FILE).read_bytes().splitlines()]
    assert [a["action"] for a in audit] == ["export", "erase"]
    assert audit[1]["records"] == 3 and "alice" not in (logs / dsr.AUDIT_FILE).read_text()
    import hashlib
    assert audit[0]["member_sha256"] == hashlib.sha256(b"alice").hexdigest() and audit[0]["records"] == 2


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
