"""[https] Redirect target, HSTS value and the Secure flag on cookies: strings in, strings out (C1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from privproxy.schema_types import arr, boolean, integer, obj, string
from privproxy.target import Target

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

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


DEFAULT = Settings()
HSTS = obj("Strict-Transport-Security on every HTTPS response.", {
    "max_age": integer("Seconds.", 0, default=DEFAULT.hsts_max_age),
    "include_subdomains": boolean("includeSubDomains.", DEFAULT.hsts_include_subdomains),
    "preload": boolean("preload (only once every subdomain serves HTTPS).", DEFAULT.hsts_preload),
})
SCHEMA = obj("HTTPS enforcement (C1).", {
    "redirect": boolean("Redirect plain HTTP to HTTPS.", DEFAULT.redirect),
    "redirect_status": integer("Redirect status; 308 keeps method and body.", default=DEFAULT.redirect_status,
                               enum=REDIRECT_CODES),
    "https_port": integer("Port in redirect targets when HTTPS is not on 443.", 1, 65535),
    "exempt_paths": arr("Path prefixes served over plain HTTP (ACME challenges, health checks).",
                        string("A path prefix.", pattern="^/"), default=list(DEFAULT.exempt_paths)),
    "hsts": HSTS,
    "secure_cookies": boolean("Add `Secure` to every Set-Cookie on HTTPS.", DEFAULT.secure_cookies),
    "min_tls": string("Lowest TLS version accepted from clients.", enum=TLS_VERSIONS, default=DEFAULT.min_tls),
})


def parse(node: Node | None) -> Settings:
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    hsts = m["hsts"].mapping(HSTS.props) if "hsts" in m else {}
    status = DEFAULT.redirect_status
    if "redirect_status" in m:
        status = m["redirect_status"].integer(DEFAULT.redirect_status)
        if status not in REDIRECT_CODES:
            m["redirect_status"].error(f"{status} is not a redirect status",
                                       "use 301, 302, 307 or 308 (308 keeps the method)")
            status = DEFAULT.redirect_status
    exempt = DEFAULT.exempt_paths
    if "exempt_paths" in m:
        exempt = m["exempt_paths"].strings()
        for n, p in zip(m["exempt_paths"].seq(), exempt, strict=False):
            if not p.startswith("/"):
                n.error(f"`{p}` is not a path", "paths start with /, e.g. /healthz")
    return Settings(
        redirect=SCHEMA.read(m, "redirect"),
        redirect_status=status,
        https_port=SCHEMA.read(m, "https_port"),  # null: keep the port the client used
        exempt_paths=exempt,
        hsts_max_age=HSTS.read(hsts, "max_age"),
        hsts_include_subdomains=HSTS.read(hsts, "include_subdomains"),
        hsts_preload=HSTS.read(hsts, "preload"),
        secure_cookies=SCHEMA.read(m, "secure_cookies"),
        min_tls=SCHEMA.read(m, "min_tls"),
    )


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
