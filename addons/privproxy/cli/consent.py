"""`privproxy consent mint|verify|revoke`: member-linkage consent tokens for integration, tests and support."""

from __future__ import annotations

import json
import sys
import time

from privproxy.access_log.formats import iso
from privproxy.cli.common import fail, load_policy, report
from privproxy.consent import revocations, token
from privproxy.errors import PrivproxyError


def add_parser(sub) -> None:
    p = sub.add_parser("consent", help="mint, verify or revoke member-linkage consent tokens")
    csub = p.add_subparsers(dest="consent_command", metavar="ACTION", required=True)

    m = csub.add_parser("mint", help="print a signed consent cookie (name=value) for a member")
    m.add_argument("--member", required=True, help="the member id (1-128 of A-Z a-z 0-9 . _ : @ + -)")
    m.add_argument("--ttl", default="30d", help="lifetime: 1s, 15m, 12h, 30d, 2w (default 30d)")
    m.add_argument("--scope", action="append", choices=token.SCOPES,
                   help="repeatable; default: every scope (analytics: beacons and cookies as sent; logs: the "
                        "linked log)")
    m.add_argument("--key-id", help="sign with this key instead of the active (first) one")
    m.add_argument("--value-only", action="store_true", help="print the token without `name=`")
    m.add_argument("--config", help="filters.yaml (default: ./filters.yaml, else the built-in defaults)")
    m.set_defaults(func=mint)

    v = csub.add_parser("verify", help="say whether and why a token is valid (exit 0 valid, 1 not)")
    v.add_argument("token", help="the token, or name=value as in a Cookie header; - reads it from stdin")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.add_argument("--config", help="filters.yaml (default: ./filters.yaml, else the built-in defaults)")
    v.set_defaults(func=verify)

    r = csub.add_parser("revoke", help="withdraw a member's consent: append them to consent.revocation_file")
    r.add_argument("--member", required=True)
    r.add_argument("--config", help="filters.yaml (default: ./filters.yaml, else the built-in defaults)")
    r.set_defaults(func=revoke)


def _settings(args):
    pol = load_policy(args.config)
    return pol, pol.consent


def mint(args) -> int:
    try:
        pol, s = _settings(args)
    except PrivproxyError as e:
        return report(e)
    try:
        ttl = token.parse_duration(args.ttl)
    except ValueError as e:
        return fail(f"--ttl: {e}")
    ref = s.active_key
    if args.key_id:
        ref = next((k for k in s.keys if k.id == args.key_id), None)
        if ref is None:
            return fail(f"--key-id {args.key_id}: not in {pol.path} consent.keys ({', '.join(k.id for k in s.keys)})")
    key = s.secrets.get(ref.id)
    if key is None:
        return fail(f"consent key {ref.id}: set the environment variable {ref.env} to the key (at least 32 "
                    f"characters, e.g. `openssl rand -hex 32`); {pol.path} consent.keys names it")
    if ttl > s.max_ttl_days * 86400:
        return fail(f"--ttl {args.ttl} is longer than consent.max_ttl_days ({s.max_ttl_days}); the proxy would "
                    "refuse the token")
    try:
        value = token.mint(args.member, tuple(args.scope or token.SCOPES), int(time.time()), ttl, ref.id, key)
    except ValueError as e:
        return fail(str(e))
    if not s.cookie and not args.value_only:
        return fail(f"{pol.path} sets no consent.cookie; use --value-only and send the token in consent.header")
    print(value if args.value_only else f"{s.cookie}={value}")
    return 0


def verify(args) -> int:
    try:
        pol, s = _settings(args)
    except PrivproxyError as e:
        return report(e)
    text = sys.stdin.readline() if args.token == "-" else args.token
    text = text.strip()
    name, eq, value = text.partition("=")
    if eq and not name.startswith("v1."):
        text = value.strip()
    verdict = s.check(text, time.time())
    t = verdict.token
    doc: dict[str, object] = {"valid": verdict.valid, "state": verdict.state, "detail": verdict.detail}
    if t is not None:
        doc.update(member=t.member, scopes=sorted(t.scopes), key_id=t.key_id, issued_at=iso(t.issued_at),
                   expires_at=iso(t.expires_at))
    if args.json:
        print(json.dumps(doc))
    elif verdict.valid and t is not None:
        print(f"valid: member {t.member}, scopes {', '.join(sorted(t.scopes)) or '(none)'}, key {t.key_id}, "
              f"issued {iso(t.issued_at)}, expires {iso(t.expires_at)}")
    else:
        extra = f" (member {t.member}, key {t.key_id}, expires {iso(t.expires_at)})" if t is not None else ""
        print(f"not valid ({verdict.state}): {verdict.detail}{extra}")
    return 0 if verdict.valid else 1


def revoke(args) -> int:
    try:
        pol, s = _settings(args)
    except PrivproxyError as e:
        return report(e)
    if s.revocations is None:
        return fail(f"{pol.path} has no consent.revocation_file; add one (e.g. revocation_file: revoked-members.txt)")
    try:
        revocations.append(s.revocations.path, args.member, time.time())
    except (ValueError, OSError) as e:
        return fail(f"cannot revoke: {e}")
    print(f"revoked: tokens of {args.member} issued until now are refused ({s.revocations.path})")
    return 0
