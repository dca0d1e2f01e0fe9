"""Data-subject requests on the linked log: export (GDPR Art. 15/20) and erase (Art. 17) one member (C12).

Only `linked.jsonl` and its rotated files are read or changed; the anonymous access log holds no member id
and is never touched. Erasing rewrites each affected file into a temporary sibling and renames it over the
original (atomic), under the lock the proxy's writer honours, so records appended meanwhile are kept. Every
request leaves one audit line in `dsr-audit.jsonl`, naming the member by a SHA-256 of the id only.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from privproxy.access_log import lock
from privproxy.access_log.formats import LINKED_FILE, iso
from privproxy.consent.token import MEMBER_ID

AUDIT_FILE = "dsr-audit.jsonl"
_ROTATED = re.compile(r"^linked-\d{4}-\d{2}-\d{2}(?:\.\d+)?\.jsonl$")


class DsrError(Exception):
    """A request that cannot be carried out as asked (bad member id, missing directory, lock timeout)."""


@dataclass
class Report:
    member: str
    records: list[dict[str, object]] = field(default_factory=list)
    removed: int = 0
    files: list[str] = field(default_factory=list)  # files that held the member's records
    unreadable: int = 0  # lines that are not JSON records, kept (unless they name the member)


def linked_files(log_dir: Path) -> list[Path]:
    """The live linked log and its rotated files, oldest first."""
    rotated = sorted(p for p in log_dir.iterdir() if _ROTATED.match(p.name))
    live = log_dir / LINKED_FILE
    return rotated + ([live] if live.exists() else [])


def _check(log_dir: Path, member: str) -> None:
    if not MEMBER_ID.fullmatch(member):
        raise DsrError("member ids are 1-128 characters from A-Z a-z 0-9 . _ : @ + -")
    if not log_dir.is_dir():
        raise DsrError(f"{log_dir} is not a directory — pass the proxy's --log-dir")


def _scan(data: bytes, member: str, report: Report) -> tuple[list[bytes], list[bytes]]:
    """Split a file's complete lines into (kept, the member's)."""
    marker = orjson.dumps({"member": member})[1:-1]  # "member":"<id>" as orjson writes it
    kept, mine = [], []
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            kept.append(line)  # a line still being written; never ours to judge
            continue
        try:
            doc = orjson.loads(line)
            is_mine = isinstance(doc, dict) and doc.get("member") == member
        except orjson.JSONDecodeError:
            report.unreadable += 1
            is_mine = marker in line  # a damaged line naming the member is erased too
            doc = None
        if is_mine:
            mine.append(line)
            if isinstance(doc, dict):
                report.records.append(doc)
        else:
            kept.append(line)
    return kept, mine


def export(log_dir: Path, member: str, now: float | None = None, timeout: float = 30.0) -> Report:
    _check(log_dir, member)
    report = Report(member)
    with lock.hold(log_dir / LINKED_FILE, shared=True, timeout=timeout):
        for path in linked_files(log_dir):
            _, mine = _scan(path.read_bytes(), member, report)
            if mine:
                report.files.append(path.name)
    _audit(log_dir, "export", member, len(report.records), report.files, now)
    return report


def erase(log_dir: Path, member: str, now: float | None = None, timeout: float = 30.0) -> Report:
    _check(log_dir, member)
    report = Report(member)
    with lock.hold(log_dir / LINKED_FILE, timeout=timeout):
        for path in linked_files(log_dir):
            kept, mine = _scan(path.read_bytes(), member, report)
            if not mine:
                continue
            _replace(path, b"".join(kept))
            report.removed += len(mine)
            report.files.append(path.name)
    _audit(log_dir, "erase", member, report.removed, report.files, now)
    return report


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.erase-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)


def _audit(log_dir: Path, action: str, member: str, records: int, files: list[str], now: float | None) -> None:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    line = orjson.dumps({
        "ts": iso(time.time() if now is None else now),
        "action": action,
        "member_sha256": hashlib.sha256(member.encode()).hexdigest(),
        "records": records,
        "files": files,
        "by": who,
    }) + b"\n"
    fd = os.open(log_dir / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
