"""Data-subject requests on the linked log: export (GDPR Art. 15/20) and erase (Art. 17) one member (C12).

Every file in the log directory whose name starts with `linked` is in scope: the live `linked.jsonl`, files
rotated by privproxy or by logrotate (`.1`, `-20261128`, any date format), pending chunks, plain or gzip,
bzip2 or xz. A file that cannot be read fails the request, naming the file and what to do: a request never
reports success over records it skipped. The anonymous access log holds no member id and is never touched.
Erasing rewrites each affected file into a temporary sibling (compressed as it was, same mode, owner and
mtime) and renames it over the original (atomic), under the lock the proxy's writer honours. One request may
cover several log directories (one per instance): it holds all their locks at once and leaves one audit line,
in `dsr-audit.jsonl` of the first directory unless told otherwise. The line names the member only by an HMAC
under a key derived from the deployment's pseudonymization key (AuditKey): a plain SHA-256 of a patterned id
(member-4711) is reversed by trying them all. Without a key the line names no member at all.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import dataclasses
import getpass
import gzip
import hmac
import lzma
import os
import shlex
import stat
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from privproxy import pseudonyms
from privproxy.access_log import lock
from privproxy.access_log.formats import LINKED_FILE, iso
from privproxy.consent.token import MEMBER_ID

AUDIT_FILE = "dsr-audit.jsonl"
AUDIT_DESTINATION = "dsr-audit"  # its own pseudonymization destination: no other recipient's key
NO_KEY_SOURCE = "none"
STEM = LINKED_FILE.partition(".")[0]  # "linked": names privproxy (linked-DAY.jsonl) and logrotate give it

# Recognised by content (a rotated file's name may say nothing), else by the name's suffix.
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
          (b"\x04\x22\x4d\x18", "lz4"), (b"\x1f\x9d", "compress"), (b"LZIP", "lzip"), (b"\x89LZO", "lzop"),
          (b"PK\x03\x04", "zip"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\xff\x06\x00\x00sNaPpY", "snappy"))
_NO_MAGIC = {"brotli", "lzma"}  # known by their name only
_SUFFIX = {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd", "zstd": "zstd", "lz4": "lz4", "Z": "compress",
           "lz": "lzip", "lzo": "lzop", "zip": "zip", "7z": "7z", "br": "brotli", "lzma": "lzma", "sz": "snappy"}
_STDLIB: dict[str, Callable[[BinaryIO, str], BinaryIO]] = {  # readable and rewritable: every member or stream
    "gzip": lambda f, mode: gzip.GzipFile(fileobj=f, mode=mode, compresslevel=6),  # 6: gzip(1) and logrotate's
    "bzip2": lambda f, mode: bz2.BZ2File(f, mode),
    "xz": lambda f, mode: lzma.LZMAFile(f, mode),
}
_UNPACK = {"zstd": "zstd -d --rm", "lz4": "lz4 -d --rm", "compress": "uncompress", "lzip": "lzip -d",
           "lzop": "lzop -d -U", "zip": "unzip", "7z": "7z x", "brotli": "brotli -d --rm", "lzma": "unlzma"}
_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)  # gzip.BadGzipFile is an OSError


class DsrError(Exception):
    """A request that cannot be carried out as asked (bad member id, missing directory, lock timeout)."""


class Incomplete(DsrError):
    """Some linked files could not be read or rewritten: the request was not carried out in full."""

    def __init__(self, action: str, report: Report) -> None:
        self.report = report
        done = ("nothing was exported" if action == "export" else
                f"{report.removed} records were erased from the other files; run erase again once fixed")
        super().__init__(f"{len(report.failed)} linked file(s) could not be "
                         f"{'read' if action == 'export' else 'read or rewritten'}, so {done}:\n"
                         + "\n".join(f"  {name}: {why}" for name, why in report.failed))


@dataclass
class Report:
    member: str
    records: list[dict[str, object]] = field(default_factory=list)
    removed: int = 0
    files: list[str] = field(default_factory=list)  # files that held the member's records
    unreadable: int = 0  # damaged lines (not JSON) naming the member: erased too, not exported
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, what is wrong — what to do)


class _Refused(Exception):
    """This file cannot be read as linked records; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class AuditKey:
    """What names the member in an audit line: HMAC-SHA256(key, member id), and where the key comes from,
    `MODE:ROTATION:N` (MODE key_file or secret, the pseudonymization period N), so that whoever holds the
    deployment's secret, or a key file still at that period, can tell which lines are a member's (audit_matches).
    The key is the pseudonymization key's destination key for "dsr-audit" (pseudonyms.destination_key): it
    yields none of the pseudonyms in the logs or at the vendors."""

    key: bytes = b""
    source: str = NO_KEY_SOURCE

    def member(self, member: str) -> str | None:
        return hmac.new(self.key, member.encode(), "sha256").hexdigest() if self.key else None


NO_KEY = AuditKey()


def audit_key(pz: pseudonyms.Pseudonymizer) -> AuditKey:
    """The audit key of the current period; NO_KEY when only a throwaway key exists (no key file could be read
    and no secret is set): an audit line then names no member, rather than a hash anyone could reverse."""
    if pz.ephemeral:
        return NO_KEY
    dest = pz.for_destination(AUDIT_DESTINATION)
    while True:  # the period and its key, read together even at the turn of a period
        period = pz.period()
        key = dest.key()
        if pz.period() == period:
            return AuditKey(key, f"{pz.mode}:{period}")


def audit_key_for(settings: pseudonyms.Settings, source: str) -> AuditKey | None:
    """The key an audit line's `member_key` names, recomputed from the deployment's key material; None when it
    cannot be any more (another mode, a key file rotated past that period, no key at all)."""
    _mode, _, period = source.partition(":")
    try:
        rotation, _ = pseudonyms.parse_period(period)
        start = pseudonyms.period_start(period)
    except ValueError:
        return None
    pz = pseudonyms.Pseudonymizer(dataclasses.replace(settings, rotation=rotation), clock=lambda: float(start))
    got = audit_key(pz)
    return got if got.source == source else None


def audit_matches(audit_file: Path, member: str, settings: pseudonyms.Settings
                  ) -> tuple[list[dict[str, object]], int]:
    """The member's lines of an audit file, and how many lines could not be checked (their key is gone)."""
    mine: list[dict[str, object]] = []
    unchecked = 0
    keys: dict[str, AuditKey | None] = {}
    with open(audit_file, "rb") as f:
        for raw in f:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                unchecked += 1
                continue
            source = str(doc.get("member_key") or NO_KEY_SOURCE)
            if source not in keys:
                keys[source] = audit_key_for(settings, source) if source != NO_KEY_SOURCE else None
            key = keys[source]
            if key is None or not doc.get("member_hmac"):
                unchecked += 1
            elif hmac.compare_digest(str(doc["member_hmac"]), key.member(member) or ""):
                mine.append(doc)
    return mine, unchecked


def linked_files(log_dir: Path) -> list[Path]:
    """Every entry of `log_dir` named `linked*`, sorted by name with the live file last."""
    return sorted((p for p in log_dir.iterdir() if p.name.startswith(STEM)),
                  key=lambda p: (p.name == LINKED_FILE, p.name))


def _check(log_dirs: Sequence[Path], member: str) -> list[Path]:
    """The directories, each once (the same directory named twice, or through a symlink, is read once)."""
    if not MEMBER_ID.fullmatch(member):
        raise DsrError("member ids are 1-128 characters from A-Z a-z 0-9 . _ : @ + -")
    if not log_dirs:
        raise DsrError("no log directory — pass the proxy's --log-dir (once per instance)")
    out: dict[str, Path] = {}
    for d in log_dirs:
        if not d.is_dir():
            raise DsrError(f"{d} is not a directory — pass the proxy's --log-dir")
        out.setdefault(os.path.realpath(d), d)
    return list(out.values())


def export(log_dirs: Path | Sequence[Path], member: str, now: float | None = None, timeout: float = 30.0,
           key: AuditKey = NO_KEY, audit_file: Path | None = None) -> Report:
    return _run("export", log_dirs, member, now, timeout, key, audit_file)


def erase(log_dirs: Path | Sequence[Path], member: str, now: float | None = None, timeout: float = 30.0,
          key: AuditKey = NO_KEY, audit_file: Path | None = None) -> Report:
    return _run("erase", log_dirs, member, now, timeout, key, audit_file)


def _run(action: str, log_dirs: Path | Sequence[Path], member: str, now: float | None, timeout: float,
         key: AuditKey, audit_file: Path | None) -> Report:
    dirs = _check([log_dirs] if isinstance(log_dirs, Path) else list(log_dirs), member)
    audit = _Audit(audit_file or dirs[0] / AUDIT_FILE, action, member, key, dirs, now)
    report = Report(member)
    deadline = time.monotonic() + timeout
    several = len(dirs) > 1  # files are then named by their path, else by their name in the one directory
    try:
        with contextlib.ExitStack() as held:
            # All the directories' locks at once, in one order for every dsr run (two never wait in a cycle).
            for d in sorted(dirs, key=os.path.realpath):
                held.enter_context(lock.hold(d / LINKED_FILE, shared=action == "export",
                                             timeout=max(0.0, deadline - time.monotonic())))
            for d in dirs:
                for path in linked_files(d):
                    name = str(path) if several else path.name
                    try:
                        _one(action, path, name, member, report, deadline)
                    except _Refused as e:
                        report.failed.append((name, str(e)))
                    except Exception as e:  # noqa: BLE001 - a bug must not cost the other files or the audit line
                        report.failed.append((name, f"unexpected {type(e).__name__} ({e}) — please report it"))
    except lock.Locked as e:
        audit.write(report, error=str(e))
        raise DsrError(f"{e} (another dsr request?) — run again, or raise --timeout") from None
    audit.write(report)
    if report.failed:
        raise Incomplete(action, report)
    return report


def _one(action: str, path: Path, name: str, member: str, report: Report, deadline: float) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # NONBLOCK: a FIFO named linked* must not hang us
    except FileNotFoundError:
        if path.is_symlink():
            raise _Refused("a symbolic link to a missing file (an archive not mounted?) — mount it, or remove "
                           "the link if its records are gone") from None
        return  # deleted since the listing (logrotate's own expiry): nothing left to export or erase
    except PermissionError:
        raise _Refused("permission denied — run dsr as the user the proxy writes its logs as (or root), or let "
                       "dsr's user read it" + ("" if action == "export" else " and write the directory")) from None
    except OSError as e:
        raise _Refused(f"cannot open it ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _Refused("not a regular file — dsr reads only files directly in the log directory; move its "
                       "linked files there (logrotate's olddir is not supported) or rename it")
    with os.fdopen(fd, "rb") as raw:
        try:  # a pending chunk is locked while the proxy writes it; the rest are quiet under the log's lock
            lock.wait_for(fd, shared=action == "export", deadline=deadline, what=path.name)
        except lock.Locked as e:
            raise _Refused(f"{e} — run again") from None
        kind = _kind(path.name, raw.read(16), st.st_size)
        mine = _scan(raw, kind, member, report, action == "export", path.name)
        if not mine:
            return
        if action == "erase":
            _rewrite(path, raw, kind, member, st)
            report.removed += mine
        report.files.append(name)


def _kind(name: str, head: bytes, size: int) -> str:
    """'plain', or the compression the file's content (else its name) shows; refuses what cannot be read."""
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    by_name = _SUFFIX.get(name.rpartition(".")[2])
    if kind is None and by_name in _NO_MAGIC and size:
        kind = by_name
    if kind is None:
        if by_name and size:
            raise _Refused(f"named as {by_name}-compressed but its content is not — check it, decompress it, "
                           "or move it out of the log directory if it holds no linked records")
        return "plain"
    if kind in _STDLIB:
        return kind
    how = _UNPACK.get(kind)
    raise _Refused(f"{kind}-compressed, which dsr cannot read — decompress it in place"
                   + (f" (`{how} {shlex.quote(name)}`)" if how else "") + " and run dsr again")


BLOCK = 1 << 20


def _blocks(raw: BinaryIO, kind: str) -> Iterator[bytes]:
    """The decompressed content in blocks of whole lines (the last one may lack its newline)."""
    raw.seek(0)
    src = raw if kind == "plain" else _STDLIB[kind](raw, "rb")
    try:
        held: list[bytes] = []
        while data := src.read(BLOCK):
            cut = data.rfind(b"\n") + 1
            if not cut:
                held.append(data)  # inside one long line
                continue
            yield b"".join([*held, data[:cut]])
            held = [data[cut:]]
        if rest := b"".join(held):
            yield rest
    finally:
        if src is not raw:
            src.close()


class _Matcher:
    """Finds the member's lines in a block. Under the log's lock no line is still being written: a last line
    without its newline is what a crash or a full disk left, and is judged like any other."""

    def __init__(self, member: str) -> None:
        self.member = member
        # A member id holds nothing JSON escapes, so only a line holding its bytes (or a \u escape) can be
        # hers; those few are parsed, the rest of a block is copied as it is.
        self.needles = (member.encode(), b"\\u")
        self.marker = orjson.dumps({"member": member})[1:-1]  # "member":"<id>" as orjson writes it

    def __call__(self, block: bytes) -> Iterator[tuple[int, int, dict[str, object] | None]]:
        """(start, end, record or None if damaged) of each of the member's lines, in order."""
        for start, end in self._candidates(block):
            line = block[start:end]
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                if self.marker in line:
                    yield start, end, None  # a damaged line naming the member is erased too
                continue
            if isinstance(doc, dict) and doc.get("member") == self.member:
                yield start, end, doc

    def _candidates(self, block: bytes) -> list[tuple[int, int]]:
        spans = set()
        for needle in self.needles:
            i = block.find(needle)
            while i >= 0:
                start = block.rfind(b"\n", 0, i) + 1
                end = block.find(b"\n", i) + 1 or len(block)
                spans.add((start, end))
                i = block.find(needle, end)
        return sorted(spans)


def _scan(raw: BinaryIO, kind: str, member: str, report: Report, collect: bool, name: str) -> int:
    """The number of the member's lines; fails on content that is not text."""
    mine, match = 0, _Matcher(member)
    # Linked logs are UTF-8 (orjson writes nothing else): other bytes mean a format dsr does not know. The
    # end may stop inside a character (a line cut short), hence never final=True.
    utf8 = codecs.getincrementaldecoder("utf-8")()
    try:
        for block in _blocks(raw, kind):
            try:
                utf8.decode(block)
            except UnicodeDecodeError:
                raise _Refused("binary content, not JSON lines — a compression dsr does not know? Decompress it, "
                               "or move it out of the log directory if it holds no linked records") from None
            for _, _, doc in match(block):
                mine += 1
                if doc is None:
                    report.unreadable += 1
                elif collect:
                    report.records.append(doc)
    except _CORRUPT as e:
        if kind == "plain":
            raise _Refused(f"cannot read it ({e}) — check the disk, then run dsr again") from None
        cat = {"gzip": "zcat", "bzip2": "bzcat", "xz": "xzcat"}[kind]
        raise _Refused(f"corrupt or truncated {kind} stream ({e}) — restore it from a backup, or keep what can "
                       f"be read (`{cat} {shlex.quote(name)} > {shlex.quote(name.rpartition('.')[0])}.recovered`) "
                       f"and move the damaged file out of the log directory, then run dsr again") from None
    return mine


def _rewrite(path: Path, raw: BinaryIO, kind: str, member: str, st: os.stat_result) -> None:
    """Write the file without the member's lines, compressed as it was, then rename it over the original."""
    target = Path(os.path.realpath(path))  # a symlink keeps pointing at the rewritten file
    tmp = target.with_name(f".{target.name}.erase-{os.getpid()}")
    match = _Matcher(member)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            os.fchmod(out.fileno(), st.st_mode & 0o7777)
            try:  # as root, hand the file back to its owner (the proxy must still append to linked.jsonl)
                os.fchown(out.fileno(), st.st_uid, st.st_gid)
            except PermissionError:
                pass
            if kind == "plain":
                sink: BinaryIO = out
            else:
                sink = _STDLIB[kind](out, "wb")
            for block in _blocks(raw, kind):
                pos = 0
                for start, end, _ in match(block):
                    sink.write(block[pos:start])
                    pos = end
                sink.write(block[pos:])
            if sink is not out:
                sink.close()  # writes the trailer; `out` stays open
            out.flush()
            os.fsync(out.fileno())
        # mtime is when the records were written: logrotate's maxage and the proxy's day both read it
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _Refused(f"cannot rewrite it ({e.strerror}) — let dsr's user write to {target.parent}, "
                           "then run erase again") from None
        raise
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)


@dataclass(frozen=True, slots=True)
class _Audit:
    """The one audit line of a request, whatever number of directories it covered."""

    path: Path
    action: str
    member: str
    key: AuditKey
    dirs: list[Path]
    now: float | None

    def write(self, report: Report, error: str = "") -> None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = str(os.getuid())
        action = self.action
        doc: dict[str, object] = {
            "ts": iso(time.time() if self.now is None else self.now),
            "action": action,
            "member_hmac": self.key.member(self.member),  # null: no key configured, no member named
            "member_key": self.key.source,
            # what was handed out or erased: an export that fails hands out nothing
            "records": report.removed if action == "erase" else 0 if report.failed or error else len(report.records),
            "files": [] if action == "export" and report.failed else report.files,
            "log_dirs": [str(d) for d in self.dirs],
            "by": who,
            "result": "failed" if error else "incomplete" if report.failed else "ok",
        }
        if report.failed:
            doc["failed"] = [{"file": name, "reason": why} for name, why in report.failed]
        if error:
            doc["error"] = error
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, orjson.dumps(doc) + b"\n")
        finally:
            os.close(fd)
