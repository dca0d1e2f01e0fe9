"""[consent] One member-linkage decision per request, from every signal on the wire; the strictest wins (C5, C13).

A visitor is linked to their identity only with a valid token from the member system, and only when nothing
else on the request says no: a withdrawal cookie, the revocation list, `Sec-GPC: 1`, `DNT: 1`, or an IAB TCF
string refusing a measurement purpose. Later signals (a beacon's own consent flags) can only make it stricter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from privproxy.consent import signals
from privproxy.consent.revocations import Revocations
from privproxy.consent.token import Verdict, verify

# Metric label values (privproxy_consent_decisions_total{state}): the token's own state, or what overrode it.
OVERRIDES = ("withdrawn", "revoked", "gpc", "dnt", "tcf", "beacon_opt_out")
STATES = ("none", "valid", "malformed", "unknown_key", "forged", "expired", "not_yet_valid") + OVERRIDES


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
    state: str = "none"  # one of STATES
    member: str = ""  # set only when the state is valid
    scopes: frozenset[str] = frozenset()
    key_id: str = ""

    @property
    def analytics(self) -> bool:
        """Beacons, vendor cookies and tracking Set-Cookies pass as sent."""
        return self.state == "valid" and "analytics" in self.scopes

    @property
    def linked(self) -> bool:
        """The request is recorded with the member id in the linked log."""
        return self.state == "valid" and "logs" in self.scopes

    def overridden(self, state: str) -> Decision:
        """Stricter only: an override replaces a valid decision; a refusal stays what it was."""
        return Decision(state) if self.state == "valid" else self


NONE = Decision()


def cookie_values(headers: list[str], name: str) -> list[str]:
    out = []
    for header in headers:
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
        return Decision("malformed")
    verdict = verify(tokens[0], settings.secrets, now, settings.max_ttl_days * 86400)
    t = verdict.token
    if not verdict.valid or t is None:
        return Decision(verdict.state)
    d = Decision("valid", t.member, t.scopes, t.key_id)
    if settings.withdrawal_cookie and cookie_values(cookies, settings.withdrawal_cookie):
        return d.overridden("withdrawn")
    if settings.revocations is not None and settings.revocations.revoked(t.member, t.issued_at):
        return d.overridden("revoked")
    if settings.honor_gpc and signals.flag_set(gpc):
        return d.overridden("gpc")
    if settings.honor_dnt and signals.flag_set(dnt):
        return d.overridden("dnt")
    if settings.tcf_cookie:
        tcf = cookie_values(cookies, settings.tcf_cookie)
        if tcf and any(signals.tcf_refuses(v) for v in tcf):
            return d.overridden("tcf")
    return d
