"""[logging] One access-log record: plain, already-scrubbed fields only (C2, C3, C9)."""

from __future__ import annotations

from dataclasses import dataclass

from privproxy.outcome import Outcome

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class LogRecord:
    ts: float  # request start, seconds since the epoch (UTC)
    request_id: str
    site: str
    client: str  # truncated address, never the full one; no port
    method: str
    scheme: str
    host: str
    path: str  # path and query after the rules
    proto: str
    status: int
    bytes: int | None
    duration_ms: float
    outcome: Outcome
    tls: str | None = None
    user_agent: str = ""  # generalized: browser family and major version, OS family
    referrer: str = ""  # after the rules
    country: str = ""  # ISO 3166-1 alpha-2 from the full address (before truncation), after the small-cell guard
    region: str = ""  # subdivision, when configured and not too rare
    city: str = ""  # only with geo.granularity: city
    instance: str = ""  # which proxy process wrote it (several instances behind one load balancer)
    bot: bool = False  # the user agent is a crawler (ua-parser's "Spider", or it names itself a bot)
    vendor: str = ""  # a beacon privproxy sent straight to this vendor (beacons.forward), not to the upstream
