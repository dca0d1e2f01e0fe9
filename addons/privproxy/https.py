"""[https] Redirect target, HSTS value and the Secure flag on cookies: strings in, strings out (C1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from privproxy.target import Target

ACME_PREFIX = "/.well-known/acme-challenge/"
_ACME_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
REDIRECT_CODES = (301, 302, 307, 308)
TLS_VERSIONS = ("TLS1_2", "TLS1_3")

# RFC 3986 reg-name / IPv4 / [IPv6], optional port. Anything else in Host is refused rather than
# echoed into a Location header.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{{1,5}})?$")


@dataclass(frozen=True, slots=True)
class Settings:
    redirect: bool = True
    redirect_status: int = 308
    https_port: int | None = None  # None: keep the port the client used in Host
    exempt_paths: tuple[str, ...] = (ACME_PREFIX,)
    hsts_max_age: int = 63072000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    secure_cookies: bool = True
    min_tls: str = "TLS1_2"

    @property
    def hsts(self) -> str:
        value = f"max-age={self.hsts_max_age}"
        if self.hsts_include_subdomains:
            value += "; includeSubDomains"
        if self.hsts_preload:
            value += "; preload"
        return value

    def is_exempt(self, target: Target) -> bool:
        """Served over plain HTTP: only a target sent in its canonical spelling under an exempt prefix, and for
        the ACME prefix only `<prefix><token>` with a base64url token and no query (RFC 8555 8.3), so that
        `/.well-known/acme-challenge/../../admin` is redirected like any other path."""
        if not target.canonical:
            return False
        for prefix in self.exempt_paths:
            if not target.path.startswith(prefix):
                continue
            if prefix != ACME_PREFIX or (target.query is None and _ACME_TOKEN.fullmatch(target.path[len(prefix):])):
                return True
        return False


def redirect_location(host: str, path: str, settings: Settings) -> str | None:
    """`https://` + host + path-and-query; None for a Host header that is not a plain host name."""
    if not host or not _HOST.match(host):
        return None
    if settings.https_port is not None:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        host = name if settings.https_port == 443 else f"{name}:{settings.https_port}"
    if not path.startswith("/"):
        path = "/" + path
    return f"https://{host}{path}"


def with_secure(set_cookie: str) -> str:
    """The Set-Cookie value with the Secure attribute, added only when missing."""
    _, _, attrs = set_cookie.partition(";")
    for attr in attrs.split(";"):
        if attr.strip().split("=", 1)[0].strip().lower() == "secure":
            return set_cookie
    return set_cookie.rstrip().rstrip(";") + "; Secure"
