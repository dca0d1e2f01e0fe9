"""[consent] One member-linkage decision per request, from every signal on the wire; the strictest wins (C5, C13).

A visitor is linked to their identity only with a valid token from the member system, and only when nothing
else on the request says no: a withdrawal cookie, the revocation list, `Sec-GPC: 1`, `DNT: 1`, or an IAB TCF
string refusing a measurement purpose. Later signals (a beacon's own consent flags) can only make it stricter.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from privproxy.consent import signals, token
from privproxy.consent.revocations import Revocations
from privproxy.consent.token import Verdict, verify
from privproxy.outcome import ConsentState
from privproxy.schema_types import ENV_NAME, ENV_NAME_PATTERN, arr, boolean, integer, obj, string
from privproxy.yamlsrc import beside

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

# Metric label values (privproxy_consent_decisions_total{state}): the token's own state, or what overrode it.
OVERRIDES = (ConsentState.WITHDRAWN, ConsentState.REVOKED, ConsentState.GPC, ConsentState.DNT, ConsentState.TCF,
             ConsentState.BEACON_OPT_OUT)
STATES = tuple(ConsentState)


@dataclass(frozen=True, slots=True)
class KeyRef:
    id: str
    env: str


@dataclass(frozen=True, slots=True)
class Settings:
    """The `consent:` section of filters.yaml, with the key material read from the environment at load."""

    enabled: bool = True
    cookie: str = "privproxy_consent"
    header: str = ""  # lower-case; believed only from client_ip.trusted_proxies
    keys: tuple[KeyRef, ...] = (KeyRef("k1", "PRIVPROXY_CONSENT_KEY"),)
    secrets: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)  # key id -> key
    max_ttl_days: int = 400
    honor_gpc: bool = True
    honor_dnt: bool = True
    tcf_cookie: str = "euconsent-v2"  # "" turns TCF reading off
    withdrawal_cookie: str = "privproxy_consent_withdrawn"
    revocations: Revocations | None = field(default=None, compare=False)
    linked_retention_days: int | None = 90

    @property
    def active_key(self) -> KeyRef:
        """The key new tokens are minted with: the first listed."""
        return self.keys[0]

    def check(self, token: str, now: float) -> Verdict:
        """A token's verdict including the revocation list (for `privproxy consent verify`)."""
        verdict = verify(token, self.secrets, now, self.max_ttl_days * 86400)
        t = verdict.token
        if verdict.valid and t is not None and self.revocations is not None \
                and self.revocations.revoked(t.member, t.issued_at):
            return Verdict("revoked", t, "the member's consent was withdrawn (revocation file)")
        return verdict


@dataclass(frozen=True, slots=True)
class Decision:
    state: ConsentState = ConsentState.NONE
    member: str = ""  # set only when the state is valid
    scopes: frozenset[str] = frozenset()
    key_id: str = ""

    @property
    def analytics(self) -> bool:
        """Beacons, vendor cookies and tracking Set-Cookies pass as sent."""
        return self.state == ConsentState.VALID and "analytics" in self.scopes

    @property
    def linked(self) -> bool:
        """The request is recorded with the member id in the linked log."""
        return self.state == ConsentState.VALID and "logs" in self.scopes

    def overridden(self, state: ConsentState) -> Decision:
        """Stricter only: an override replaces a valid decision; a refusal stays what it was."""
        return Decision(state) if self.state == ConsentState.VALID else self


NONE = Decision()


def cookie_values(headers: list[str], name: str) -> list[str]:
    out = []
    for header in headers:
        if name not in header:  # no part can be named `name` (most requests carry no consent cookie)
            continue
        for part in header.split(";"):
            k, eq, v = part.strip().partition("=")
            if eq and k == name:
                out.append(v.strip().strip('"'))
    return out


def decide(settings: Settings, cookies: list[str], header: list[str], gpc: list[str], dnt: list[str],
           now: float) -> Decision:
    """`cookies`: the Cookie headers; `header`: the consent header's values when the peer is trusted, else []."""
    if not settings.enabled:
        return NONE
    tokens = cookie_values(cookies, settings.cookie) if settings.cookie else []
    tokens += [v.strip() for v in header]
    if not tokens:
        return NONE
    if len(set(tokens)) > 1:  # two different tokens: do not guess which one the member system meant
        return Decision(ConsentState.MALFORMED)
    verdict = verify(tokens[0], settings.secrets, now, settings.max_ttl_days * 86400)
    t = verdict.token
    if not verdict.valid or t is None:
        return Decision(ConsentState(verdict.state))
    d = Decision(ConsentState.VALID, t.member, t.scopes, t.key_id)
    if settings.withdrawal_cookie and cookie_values(cookies, settings.withdrawal_cookie):
        return d.overridden(ConsentState.WITHDRAWN)
    if settings.revocations is not None and settings.revocations.revoked(t.member, t.issued_at):
        return d.overridden(ConsentState.REVOKED)
    if settings.honor_gpc and signals.flag_set(gpc):
        return d.overridden(ConsentState.GPC)
    if settings.honor_dnt and signals.flag_set(dnt):
        return d.overridden(ConsentState.DNT)
    if settings.tcf_cookie:
        tcf = cookie_values(cookies, settings.tcf_cookie)
        if tcf and any(signals.tcf_refuses(v) for v in tcf):
            return d.overridden(ConsentState.TCF)
    return d


# --- filters.yaml `consent:` ------------------------------------------------------------------------------------
DEFAULT = Settings()
KEY_ID_PATTERN = rf"^{token.KEY_ID.pattern}$"
KEY_ID = re.compile(KEY_ID_PATTERN)
KEY = obj("A signing key.", {
    "id": string("Key id written into tokens.", pattern=KEY_ID_PATTERN),
    "env": string("Environment variable holding the key (at least 32 characters).", pattern=ENV_NAME_PATTERN),
}, required=("id", "env"))
LINKED_LOG = obj("The linked log (linked.jsonl under --log-dir): consented members' requests with their id.", {
    "retention_days": integer("Rotated linked files older than this are deleted; 0 keeps them forever.", 0,
                              default=DEFAULT.linked_retention_days or 0),
})
SCHEMA = obj("Member-linkage consent (C5, C12, C13): a member is linked to their identity only with a valid token "
             "from the member system and no signal saying no. Token spec: docs/consent-token.md.", {
    "enabled": boolean("Read consent tokens; off: nobody is ever linked.", DEFAULT.enabled),
    "cookie": string("Cookie carrying the member system's token; empty: no cookie source.",
                     default=DEFAULT.cookie, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]*$"),
    "header": string("Request header carrying the token, believed only from client_ip.trusted_proxies "
                     "(e.g. set by a login gateway); empty: off.", default=DEFAULT.header, pattern=r"^[A-Za-z0-9-]*$"),
    "keys": arr("Accepted signing keys; the first one is active (mints). Each names the environment variable that "
                "holds the key, never the key itself. Rotate by listing the new key first and removing the old one "
                "once its tokens expired.", KEY, default=[{"id": k.id, "env": k.env} for k in DEFAULT.keys]),
    "max_ttl_days": integer("Tokens with a longer lifetime are refused.", 1, default=DEFAULT.max_ttl_days),
    "honor_gpc": boolean("`Sec-GPC: 1` overrides a valid token.", DEFAULT.honor_gpc),
    "honor_dnt": boolean("`DNT: 1` overrides a valid token.", DEFAULT.honor_dnt),
    "tcf_cookie": string("Cookie with an IAB TCF v2.2 string; a token counts only when it consents to purposes 1, "
                         "7, 8 and 9. Empty: not read.", default=DEFAULT.tcf_cookie),
    "withdrawal_cookie": string("A cookie the site sets when a member withdraws; present: no linkage.",
                                default=DEFAULT.withdrawal_cookie),
    "revocation_file": string("File of withdrawn member ids (`member [time]` per line), re-read when it changes; "
                              "relative to filters.yaml. `privproxy consent revoke` appends to it."),
    "linked_log": LINKED_LOG,
})


def parse(node: Node | None, path: str, warnings: list[str]) -> Settings:
    """The `consent:` section of the filters.yaml at `path`, with the keys read from the environment; what
    keeps consent from working (a key unset or too short) is added to `warnings`."""
    if node is None:
        return dataclasses.replace(DEFAULT, secrets=read_secrets(DEFAULT.keys, path, None))
    m = node.mapping(SCHEMA.props)
    keys = DEFAULT.keys
    if "keys" in m:
        refs, seen = [], set()
        for n in m["keys"].seq():
            km = n.mapping(KEY.props)
            kid = km["id"].string() if "id" in km else ""
            env = km["env"].string() if "env" in km else ""
            if not KEY_ID.fullmatch(kid):
                n.error("a key needs an `id` of 1-16 letters, digits, _ or -", "e.g. id: k2")
            elif kid in seen:
                km["id"].error(f"duplicate key id `{kid}`", "give each key its own id")
            if not ENV_NAME.fullmatch(env):
                n.error("a key needs `env`, the name of the environment variable holding it",
                        "e.g. env: PRIVPROXY_CONSENT_KEY_K2 (the key itself never goes in this file)")
            seen.add(kid)
            refs.append(KeyRef(kid, env))
        if not refs:
            m["keys"].error("no keys listed", "list at least one {id, env}, or set `enabled: false`")
        else:
            keys = tuple(refs)
    revocation_file = m["revocation_file"].string() if "revocation_file" in m else ""
    ll = m["linked_log"].mapping(LINKED_LOG.props) if "linked_log" in m else {}
    enabled = SCHEMA.read(m, "enabled")
    # An empty (null) cookie, header or TCF cookie turns that source off, so these read null as "", not the default.
    return Settings(
        enabled=enabled,
        cookie=m["cookie"].string() if "cookie" in m else DEFAULT.cookie,
        header=(m["header"].string() or "").lower() if "header" in m else DEFAULT.header,
        keys=keys,
        secrets=read_secrets(keys, path, warnings if enabled else None),
        max_ttl_days=SCHEMA.read(m, "max_ttl_days"),
        honor_gpc=SCHEMA.read(m, "honor_gpc"),
        honor_dnt=SCHEMA.read(m, "honor_dnt"),
        tcf_cookie=m["tcf_cookie"].string() if "tcf_cookie" in m else DEFAULT.tcf_cookie,
        withdrawal_cookie=m["withdrawal_cookie"].string() if "withdrawal_cookie" in m else DEFAULT.withdrawal_cookie,
        revocations=Revocations(beside(path, revocation_file)) if revocation_file else None,
        linked_retention_days=LINKED_LOG.read(ll, "retention_days") or None,
    )


def read_secrets(keys: tuple[KeyRef, ...], path: str, warnings: list[str] | None) -> dict[str, bytes]:
    """Key material from the environment; the YAML names variables only. Short keys are refused."""
    out = {}
    for ref in keys:
        value = os.environ.get(ref.env, "")
        if len(value) >= 32:
            out[ref.id] = value.encode()
        elif warnings is not None and value:
            warnings.append(f"{path}: consent key {ref.id}: {ref.env} is shorter than 32 characters and is not used; "
                            "generate one with `openssl rand -hex 32`")
    if warnings is not None and keys and not any(os.environ.get(k.env) for k in keys):
        warnings.append(f"{path}: consent: the environment variable {keys[0].env} is not set, so no consent token "
                        "can be verified and nobody is linked to their identity; set it to use member consent")
    return out
