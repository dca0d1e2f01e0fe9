"""Coarse geography from a MaxMind DB, looked up on the full address before it is truncated (C9, C14).

Works with GeoLite2/GeoIP2 City or Country and DB-IP lite files (the same record layout). A small-cell guard
keeps rare regions from singling out a visitor: a region seen fewer than k times in the current window is
reported one level coarser (subdivision -> country -> nothing).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from privproxy import truncate
from privproxy.errors import ConfigError
from privproxy.schema_types import integer, obj, string
from privproxy.yamlsrc import beside

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

GRANULARITIES = ("country", "subdivision", "city")
EU = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split())
GROUPS = {"EU": EU, "EEA": EU | {"IS", "LI", "NO"}}


def expand(regions: tuple[str, ...]) -> frozenset[str]:
    """Country codes and groups (EU, EEA) as a set of country codes."""
    out: set[str] = set()
    for r in regions:
        out |= GROUPS.get(r, {r})
    return frozenset(out)


# Codes people write that ISO 3166-1 does not assign: UK is only "exceptionally reserved" (the country is GB),
# EL is the EU's own code for Greece (GR). XK (Kosovo) is user-assigned but GeoIP databases report it.
REGION_ALIASES = {"UK": "GB", "EL": "GR", "EUROPE": "EU", "EUROPEAN UNION": "EU"}
USER_ASSIGNED = frozenset({"XK"})


@functools.cache
def iso_countries() -> frozenset[str]:
    import pycountry  # noqa: PLC0415 - its database is loaded only by files that name regions

    return frozenset(c.alpha_2 for c in pycountry.countries) | USER_ASSIGNED


def is_region(code: str) -> bool:
    """An ISO 3166-1 alpha-2 country code or a group (EU, EEA)."""
    return code in GROUPS or code in iso_countries()


def region_guess(code: str) -> str:
    """The code meant by `UK`, `de`, `DEU`, `276` or `Germany`, or ""."""
    import pycountry  # noqa: PLC0415

    key = code.strip().upper()
    if key in REGION_ALIASES:
        return REGION_ALIASES[key]
    if is_region(key):
        return key
    try:
        return str(pycountry.countries.lookup(code.strip()).alpha_2)
    except LookupError:
        return ""

_ISO = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class Place:
    country: str = ""  # ISO 3166-1 alpha-2, or "" when unknown
    subdivision: str = ""  # ISO 3166-2 suffix (e.g. "13" for Tokyo) or the English name (DB-IP lite)
    city: str = ""

    def coarser(self) -> Place:
        if self.city:
            return Place(self.country, self.subdivision)
        if self.subdivision:
            return Place(self.country)
        return Place()

    def key(self) -> tuple[str, str, str]:
        return (self.country, self.subdivision, self.city)


@dataclass(frozen=True, slots=True)
class Settings:
    database: str | None = None
    granularity: str = "subdivision"
    small_cell_k: int = 5
    window_seconds: int = 3600


DEFAULT = Settings()
SMALL_CELL = obj("Rare regions are logged one level coarser so they cannot single out a visitor.", {
    "k": integer("A region seen fewer than k times in the window is logged coarser; 1 turns it off.",
                 1, default=DEFAULT.small_cell_k),
    "window_seconds": integer("Length of the counting window.", 1, default=DEFAULT.window_seconds),
})
SCHEMA = obj("Coarse geography from a MaxMind DB, looked up before the address is truncated (C9, C14).", {
    "database": string("Path of a GeoLite2/GeoIP2 City or Country, or DB-IP lite .mmdb file; "
                       "`--geoip-db` overrides it."),
    "granularity": string("The finest level logged.", enum=GRANULARITIES, default=DEFAULT.granularity),
    "small_cell": SMALL_CELL,
})


def parse(node: Node | None, path: str) -> Settings:
    """The `geo:` section of the filters.yaml at `path` (the database is named relative to it)."""
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    db = beside(path, m["database"].string()) if "database" in m else None
    sc = m["small_cell"].mapping(SMALL_CELL.props) if "small_cell" in m else {}
    return Settings(
        database=db or None,
        granularity=SCHEMA.read(m, "granularity"),
        small_cell_k=SMALL_CELL.read(sc, "k"),
        window_seconds=SMALL_CELL.read(sc, "window_seconds"),
    )


class GeoDB:
    """An open MaxMind DB. Opening checks the file, so a missing or corrupt one is an error at start."""

    def __init__(self, path: str, granularity: str = "subdivision") -> None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("GeoIP database not found", path=str(p),
                              hint="download GeoLite2-City.mmdb with geoipupdate (see README, Geography), or run "
                                   "without geography: no --geoip-db (privproxy_geoip_db), no geo.database")
        import maxminddb  # here, not at import: it costs a twentieth of a second that filter-log never needs

        try:
            self.reader = maxminddb.open_database(str(p), maxminddb.MODE_MMAP)
            self.database_type = self.reader.metadata().database_type
        except (maxminddb.InvalidDatabaseError, OSError, ValueError) as e:
            raise ConfigError(f"not a MaxMind DB file ({type(e).__name__})", path=str(p),
                              hint="download it again; GeoLite2/GeoIP2 City or Country and DB-IP lite work") from None
        self.path = str(p)
        self.granularity = granularity

    def lookup(self, ip: str | truncate.IPAddress) -> Place | None:
        """The place of a full address, at the configured granularity; None when the DB does not know it."""
        addr = truncate.parse_ip(ip) if isinstance(ip, str) else truncate.unmap(ip)
        if addr is None:
            raise ValueError("not an IP address")
        rec = self.reader.get(addr)  # ::ffff:a.b.c.d looked up as the IPv4 address it is
        if not isinstance(rec, dict):
            return None
        country = _iso((rec.get("country") or rec.get("registered_country") or {}).get("iso_code"))
        if not country:
            return None
        sub = city = ""
        if self.granularity in ("subdivision", "city"):
            subs = rec.get("subdivisions") or []
            if subs and isinstance(subs[0], dict):
                sub = _label(subs[0].get("iso_code") or (subs[0].get("names") or {}).get("en"))
        if self.granularity == "city" and sub:
            city = _label((rec.get("city") or {}).get("names", {}).get("en"))
        return Place(country, sub, city)

    def close(self) -> None:
        self.reader.close()


def _iso(v: object) -> str:
    return v if isinstance(v, str) and _ISO.match(v) else ""


def _label(v: object) -> str:
    # Names come from a file: keep them printable and short, whatever the file says.
    return "".join(c for c in v if c.isprintable())[:64] if isinstance(v, str) else ""


class SmallCellGuard:
    """Counts places per tumbling window; a place seen fewer than k times so far is reported coarser."""

    def __init__(self, k: int, window_seconds: int, clock=time.monotonic) -> None:
        self.k = k
        self.window = window_seconds
        self.clock = clock
        self._start = clock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def apply(self, place: Place) -> Place:
        if self.k <= 1:
            return place
        levels = []
        p = place
        while p.country:
            levels.append(p)
            p = p.coarser()
        with self._lock:
            now = self.clock()
            if now - self._start >= self.window:
                self._start, self._counts = now, Counter()
            for level in levels:  # every visit counts at every level: JP/13 is also a visit from JP
                self._counts[level.key()] += 1
            for level in levels:
                if self._counts[level.key()] >= self.k:
                    return level
        return Place()


class Locator:
    """Database + small-cell guard: one call per request, never raises."""

    def __init__(self, settings: Settings, db: GeoDB | None) -> None:
        self.settings = settings
        self.db = db
        self.guard = SmallCellGuard(settings.small_cell_k, settings.window_seconds)

    def locate(self, ip: object) -> Located:
        """The place to log (after the guard), the lookup result, and the country that region rules use."""
        if self.db is None:
            return Located(Place(), "disabled")
        try:
            place = self.db.lookup(ip)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a damaged region of the file, an odd address: no place, never a failed request
            return Located(Place(), "error")
        if place is None:
            return Located(Place(), "not_found")
        return Located(self.guard.apply(place), "found", place.country)


@dataclass(frozen=True, slots=True)
class Located:
    place: Place  # what may be logged: coarsened by the small-cell guard
    result: str  # found, not_found, error, disabled
    country: str = ""  # the visitor's country before the guard: chooses region rules, never logged


RESULTS = ("found", "not_found", "error", "disabled")
