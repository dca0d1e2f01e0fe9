"""`privproxy dsr export|erase --member ID --log-dir DIR`: data-subject requests on the linked log (C12).

Exit 1, naming each file and what to do, when any linked file could not be read: `export` then prints nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from privproxy import dsr
from privproxy.access_log.formats import iso
from privproxy.access_log.lock import Locked
from privproxy.cli.common import fail


def add_parser(sub) -> None:
    p = sub.add_parser("dsr", help="data-subject requests: export or erase a member's linked records")
    dsub = p.add_subparsers(dest="dsr_command", metavar="ACTION", required=True)
    for name, helptext in (("export", "print the member's linked records as JSON (GDPR Art. 15, 20); rotated and "
                                      "compressed (gzip, bzip2, xz) files included"),
                           ("erase", "remove the member's linked records, rotated and compressed files included "
                                     "(Art. 17)")):
        a = dsub.add_parser(name, help=helptext)
        a.add_argument("--member", required=True, help="the member id, as in their consent token")
        a.add_argument("--log-dir", required=True, help="the proxy's --log-dir")
        a.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the log lock (default 30)")
        a.set_defaults(func=export if name == "export" else erase)
    # `export` can write its JSON to a file too
    dsub.choices["export"].add_argument("--output", "-o", help="write the JSON to this file instead of stdout")


def export(args) -> int:
    try:
        rep = dsr.export(Path(args.log_dir), args.member, timeout=args.timeout)
    except (dsr.DsrError, Locked, OSError) as e:
        return fail(f"dsr export: {e}")
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
    try:
        rep = dsr.erase(Path(args.log_dir), args.member, timeout=args.timeout)
    except (dsr.DsrError, Locked, OSError) as e:
        return fail(f"dsr erase: {e}")
    print(f"erased {rep.removed} linked records of {rep.member} from {len(rep.files)} file(s)"
          + (f": {', '.join(rep.files)}" if rep.files else "") + f"; audit line in {dsr.AUDIT_FILE}")
    return 0
