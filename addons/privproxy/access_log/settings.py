"""[logging] The access log's format, rotation and retention (C3, C9, C11)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from privproxy import query_allowlist
from privproxy.access_log.formats import FORMAT_CHOICES
from privproxy.access_log.rotation import Rotation
from privproxy.schema_types import boolean, integer, obj, string

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    format: str = "json"
    rotation: Rotation = Rotation()
    query_allowlist: query_allowlist.Allowlist = query_allowlist.Allowlist()


DEFAULT = Settings()
ROTATION = obj("When the live file is moved aside as <name>-YYYY-MM-DD[.N].", {
    "daily": boolean("Rotate at midnight UTC.", DEFAULT.rotation.daily),
    "max_size_mb": integer("Also rotate when the file reaches this size; 0: no size limit.", 0,
                           default=(DEFAULT.rotation.max_bytes or 0) // MB),
})
SCHEMA = obj("The access log: format, rotation, retention (C3, C9, C11).", {
    "format": string("json: access.jsonl; combined: access.log (GoAccess, AWStats); vhost_combined: access.log in "
                     "Apache's vhost_combined (`host:port` first); both: json and combined. `--log-format` overrides "
                     "it.", enum=FORMAT_CHOICES, default=DEFAULT.format),
    "rotation": ROTATION,
    "retention_days": integer("Rotated files older than this many days are deleted; 0 keeps them forever.", 0,
                              default=DEFAULT.rotation.retention_days or 0),
    "query_allowlist": query_allowlist.SCHEMA,
})


def parse(node: Node | None) -> Settings:
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    r = m["rotation"].mapping(ROTATION.props) if "rotation" in m else {}
    size_mb = ROTATION.read(r, "max_size_mb")
    return Settings(SCHEMA.read(m, "format"), Rotation(
        daily=ROTATION.read(r, "daily"),
        max_bytes=size_mb * MB if size_mb else None,
        retention_days=SCHEMA.read(m, "retention_days") or None,
    ), query_allowlist.parse(m.get("query_allowlist")))
