"""`privproxy dsr export|erase|audit --member ID --log-dir DIR [--log-dir DIR]...`: data-subject requests on the
linked logs of one or several instances, with one audit line per request (C12).

Exit 1, naming each file and what to do, when any linked file could not be read: `export` then prints nothing.
The audit line names the member by an HMAC under a key derived from the deployment's pseudonymization key (the
`pseudonymization` settings of --config: its key_file, else its secret_env variable), never by the id itself.
"""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path

from privproxy import dsr
from privproxy.access_log.formats import iso
from privproxy.access_log.lock import Locked
from privproxy.cli.common import fail, load_policy, report
from privproxy.errors import PrivproxyError

CONFIG_HELP = ("filters.yaml whose pseudonymization key (key_file, else the secret_env variable) keys the audit "
               "line's member hash: the proxy's (default: ./filters.yaml, else the built-in settings, which read "
               "PRIVPROXY_SECRET)")


def add_parser(sub) -> None:
    p = sub.add_parser("dsr", help="data-subject requests: export or erase a member's linked records")
    dsub = p.add_subparsers(dest="dsr_command", metavar="ACTION", required=True)
    for name, helptext in (("export", "print the member's linked records as JSON (GDPR Art. 15, 20); rotated and "
                                      "compressed (gzip, bzip2, xz) files included"),
                           ("erase", "remove the member's linked records, rotated and compressed files included "
                                     "(Art. 17)"),
                           ("audit", "print the audit lines of requests about the member (those whose key can "
                                     "still be recomputed)")):
        a = dsub.add_parser(name, help=helptext)
        a.add_argument("--member", required=True, help="the member id, as in their consent token")
        a.add_argument("--log-dir", required=True, action="append", metavar="DIR",
                       help="a proxy's --log-dir; repeat it for every instance, or give a pattern in quotes "
                            "('/var/log/privproxy/*': every directory it matches)")
        a.add_argument("--audit-file", metavar="FILE",
                       help=f"the audit log (default: {dsr.AUDIT_FILE} in the first --log-dir)")
        a.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
        if name != "audit":
            a.add_argument("--timeout", type=float, default=30.0,
                           help="seconds to wait for the log locks (default 30)")
        a.set_defaults(func={"export": export, "erase": erase, "audit": audit}[name])
    # `export` can write its JSON to a file too
    dsub.choices["export"].add_argument("--output", "-o", help="write the JSON to this file instead of stdout")


def log_dirs(values: list[str]) -> list[Path]:
    """--log-dir values in order, a pattern replaced by the directories it matches (sorted)."""
    out: list[Path] = []
    for value in values:
        if glob.has_magic(value):
            found = sorted(Path(m) for m in glob.glob(value) if Path(m).is_dir())
            if not found:
                raise dsr.DsrError(f"--log-dir {value}: the pattern matches no directory")
            out.extend(found)
        else:
            out.append(Path(value))
    return out


def audit_key(args) -> dsr.AuditKey:
    pz = load_policy(args.config).scrubber.pseudonymizer
    key = dsr.audit_key(pz)
    if key is dsr.NO_KEY:
        why = pz.missing_secret() or "no pseudonymization key is configured"
        print(f"privproxy: warning: {why}, so the audit line names no member (member_hmac null). Run dsr with the "
              f"proxy's key: its filters.yaml (--config) and the {pz.settings.secret_env} variable, or a readable "
              "key_file", file=sys.stderr)
    return key


def _run(args, action) -> dsr.Report | int:
    """The request, or the exit status of its failure (reported)."""
    try:
        dirs = log_dirs(args.log_dir)
        key = audit_key(args)
        return action(dirs, args.member, timeout=args.timeout, key=key, audit_file=audit_path(args, dirs))
    except PrivproxyError as e:  # the filters.yaml holding the key settings: FILE:LINE:COL — what to do
        return report(e)
    except (dsr.DsrError, Locked, OSError) as e:
        return fail(f"dsr {args.dsr_command}: {e}")


def audit_path(args, dirs: list[Path]) -> Path:
    return Path(args.audit_file) if args.audit_file else dirs[0] / dsr.AUDIT_FILE


def export(args) -> int:
    rep = _run(args, dsr.export)
    if isinstance(rep, int):
        return rep
    doc = {"member": rep.member, "exported_at": iso(time.time()), "files": rep.files,
           "records": sorted(rep.records, key=lambda r: str(r.get("ts", "")))}
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"exported {len(rep.records)} records to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def erase(args) -> int:
    rep = _run(args, dsr.erase)
    if isinstance(rep, int):
        return rep
    print(f"erased {rep.removed} linked records of {rep.member} from {len(rep.files)} file(s)"
          + (f": {', '.join(rep.files)}" if rep.files else "")
          + f"; audit line in {audit_path(args, log_dirs(args.log_dir))}")
    return 0


def audit(args) -> int:
    try:
        dirs = log_dirs(args.log_dir)
        settings = load_policy(args.config).pseudonyms
    except dsr.DsrError as e:
        return fail(f"dsr audit: {e}")
    except PrivproxyError as e:
        return report(e)
    files = [Path(args.audit_file)] if args.audit_file else list(dict.fromkeys(d / dsr.AUDIT_FILE for d in dirs))
    unchecked = 0
    for path in files:
        try:
            mine, n = dsr.audit_matches(path, args.member, settings)
        except FileNotFoundError:
            continue
        except OSError as e:
            return fail(f"dsr audit: {path}: {e.strerror or e}")
        unchecked += n
        for doc in mine:
            sys.stdout.write(json.dumps({"audit_file": str(path), **doc}, ensure_ascii=False) + "\n")
    if unchecked:
        print(f"privproxy: {unchecked} audit line(s) could not be checked: they name no member, or their key is "
              "gone (a key file rotated past their period, another key source)", file=sys.stderr)
    return 0
