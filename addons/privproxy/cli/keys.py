"""`privproxy keys init|rotate|show`: the pseudonymization key file instances share (pseudonymization.key_file).

`rotate` advances the file one way to the current period (run it from cron or a Kubernetes CronJob at each
period), so the file never again holds a key from which a past period's pseudonyms could be recomputed.
"""

from __future__ import annotations

import datetime
import errno
import os
import secrets
import stat
import sys
import time
from pathlib import Path

from privproxy import pseudonyms
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import ConfigError, PrivproxyError
from privproxy.pseudonyms import KeyFile, fingerprint, read_key_file, utc, write_key_file

clock = time.time  # the tests' fake clock replaces it


def add_parser(sub) -> None:
    p = sub.add_parser("keys", help="create, rotate and inspect the shared pseudonymization key file")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    i = ksub.add_parser("init", help="write a new random key for the current period (mode 0600)")
    i.add_argument("--force", action="store_true",
                   help="replace an existing file: every pseudonym changes once, and running instances log a "
                        "disagreement and switch to the new key")
    r = ksub.add_parser("rotate", help="advance the file to the current period, one way; idempotent within a "
                                       "period (run it from cron or a Kubernetes CronJob)")
    r.add_argument("--output", metavar="FILE",
                   help="write the advanced file here instead of replacing --file (a read-only mount such as a "
                        "Kubernetes Secret: apply FILE as the Secret)")
    s = ksub.add_parser("show", help="print the file's period, a fingerprint of its key and its age (never the key)")
    for a, func in ((i, init), (r, rotate), (s, show)):
        a.add_argument("--file", help="the key file (default: pseudonymization.key_file of the filters.yaml)")
        a.add_argument("--config", help="filters.yaml, for pseudonymization.rotation and key_file (default: "
                                        "./filters.yaml; without one, init uses daily and rotate keeps the file's)")
        a.set_defaults(func=func)


def _where(args) -> tuple[str | None, str, str]:
    """(rotation or None, key file, where the rotation came from) from --file and --config/./filters.yaml."""
    rotation, key_file, source = None, "", ""
    if args.config or Path("filters.yaml").is_file():
        pol = load_policy(args.config)
        rotation, key_file, source = pol.pseudonyms.rotation, pol.pseudonyms.key_file, pol.path
    path = args.file or key_file
    if not path:
        raise PrivproxyError("privproxy: no key file: pass --file FILE, or set pseudonymization.key_file in "
                             "filters.yaml (and pass --config when it is not ./filters.yaml)")
    return rotation, path, source


def _read(path: str) -> KeyFile | int:
    try:
        return read_key_file(path)
    except ConfigError as e:  # the key file's own path:line:col — what to do
        print(str(e), file=sys.stderr)
        return 1


def _cannot_write(path: str, e: OSError) -> int:
    hint = "check the directory exists and is writable by this user"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = ("a read-only mount such as a Kubernetes Secret cannot be rotated in place: write the new file "
                "elsewhere with --output and apply it as the Secret (README, Pseudonymization keys)")
    return fail(f"cannot write {path}: {e.strerror or e} — {hint}")


def init(args) -> int:
    try:
        rotation, path, _ = _where(args)
    except PrivproxyError as e:
        return report(e)
    if os.path.lexists(path) and not args.force:
        return fail(f"{path} exists, and running instances may hold its key — to advance it run `privproxy keys "
                    f"rotate --file {path}`; to start a new key anyway (every pseudonym changes once) add --force")
    now = clock()
    state = KeyFile(pseudonyms.period_id(now, rotation or pseudonyms.Settings().rotation),
                    secrets.token_bytes(pseudonyms.KEY_BYTES), utc(now))
    try:
        write_key_file(path, state)
    except OSError as e:
        return _cannot_write(path, e)
    print(f"{path}: a new key for period {state.period} (fingerprint {fingerprint(state.key)}), mode 0600. "
          f"Advance it at the start of each period with `privproxy keys rotate --file {path}`.")
    return 0


def rotate(args) -> int:
    try:
        rotation, path, _ = _where(args)
    except PrivproxyError as e:
        return report(e)
    if isinstance(old := _read(path), int):
        return old
    rotation = rotation or pseudonyms.parse_period(old.period)[0]
    now = clock()
    index = int(now) // pseudonyms.ROTATIONS[rotation]
    n, key = pseudonyms.advance(old.key, old.period, rotation, index)
    new = KeyFile(f"{rotation}:{n}", key, utc(now)) if f"{rotation}:{n}" != old.period else old
    out = args.output or path
    if new is old and not args.output:
        ahead = f", ahead of this host's clock ({rotation}:{index}); check the clocks" if n > index else ""
        print(f"{path}: already at period {old.period}{ahead} (fingerprint {fingerprint(old.key)}); nothing to do")
        return 0
    try:
        write_key_file(out, new)
    except OSError as e:
        return _cannot_write(out, e)
    if new is old:
        print(f"{out}: a copy of {path}, already at period {old.period} (fingerprint {fingerprint(old.key)})")
    else:
        print(f"{out}: advanced from {old.period} to {new.period} (fingerprint {fingerprint(new.key)}); it no longer "
              "holds any earlier period's key")
    return 0


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def show(args) -> int:
    try:
        rotation, path, source = _where(args)
    except PrivproxyError as e:
        return report(e)
    if isinstance(cur := _read(path), int):
        return cur
    try:
        st = os.stat(path)
    except OSError as e:
        return fail(f"cannot read {path}: {e.strerror or e}")
    file_rotation, n = pseudonyms.parse_period(cur.period)
    seconds = pseudonyms.ROTATIONS[file_rotation]
    now = clock()
    index = int(now) // seconds
    start = n * seconds
    if n == index:
        state = "the current one"
    elif n < index:
        state = (f"{index - n} period(s) behind the current one ({file_rotation}:{index}): whoever reads it can "
                 f"recompute the pseudonyms since {utc(start)}; run `privproxy keys rotate --file {path}`")
    else:
        state = f"ahead of this host's clock ({file_rotation}:{index}); check the clocks"
    try:
        written = datetime.datetime.fromisoformat(cur.written.replace("Z", "+00:00")).timestamp()
    except ValueError:
        written = st.st_mtime
    mode = stat.S_IMODE(st.st_mode)
    print(f"file:        {path}")
    print(f"period:      {cur.period} ({utc(start)} to {utc(start + seconds)}), {state}")
    print(f"fingerprint: {fingerprint(cur.key)} (of this period's key; it reveals nothing about the key)")
    print(f"written:     {utc(written)} ({_ago(now - written)} ago)")
    print(f"mode:        {mode:04o}" + (": others than its owner can read it; chmod 600" if mode & 0o077 else ""))
    if rotation and rotation != file_rotation:
        print(f"note:        {source} rotates {rotation}: instances convert the file's key to it (one way); "
              f"`privproxy keys rotate --file {path} --config {source}` rewrites the file that way")
    return 0
