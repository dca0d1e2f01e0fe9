"""The node types filters.yaml's shape is declared in: each section module declares its node beside its Settings
and parse, privproxy.schema assembles them, and the JSON Schema for editors is rendered from the same nodes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

CONTROL_PATTERN = r"^C(?:[1-9]|1[0-5])$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
CONTROL = re.compile(CONTROL_PATTERN)
ENV_NAME = re.compile(ENV_NAME_PATTERN)


@dataclass(frozen=True)
class T:
    """One node of the declaration. `kind`: object, map, array, string, integer, boolean."""

    kind: str
    doc: str = ""
    props: dict[str, T] = field(default_factory=dict)  # object
    required: tuple[str, ...] = ()
    values: T | None = None  # map values / array items
    enum: tuple[Any, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None
    pattern: str | None = None
    options: tuple[T, ...] = ()  # any_of: the shapes a value may take (a short string or the full object)

    def at(self, path: str) -> T:
        """The node at a dotted path below this one: `hsts`, `keys[]`, `{}`."""
        t = self
        for part in path.split(".") if path else ():
            name = part.rstrip("[]{}")
            if name:
                t = t.props[name]
            if part.endswith(("[]", "{}")):
                assert t.values is not None
                t = t.values
        return t

    def keys(self, path: str = "") -> set[str]:
        """The keys an object allows; the parser rejects every other key with a did-you-mean."""
        return set(self.at(path).props)

    def read(self, m: Mapping[str, Node], key: str) -> Any:
        """`key` of an object, read as declared, or the declared default when it is absent."""
        return self.props[key].value(m.get(key))

    def value(self, n: Node | None) -> Any:
        """A scalar read as declared (type, range, choices); the declared default when absent or null."""
        if n is None:
            return self.default
        if self.kind == "boolean":
            return n.boolean(self.default)
        if self.kind == "integer" and not self.enum:
            return n.integer(self.default, self.minimum, self.maximum)
        if self.kind == "string":
            return n.choice(self.enum, self.default) if self.enum else n.string(self.default)
        raise TypeError(f"{n.name}: a {self.kind} is read by its section's parser")

    def json(self) -> dict[str, Any]:
        """This node as JSON Schema (draft 2020-12)."""
        d: dict[str, Any] = {}
        if self.doc:
            d["description"] = self.doc
        if self.kind == "object":
            d["type"] = "object"
            d["properties"] = {k: v.json() for k, v in self.props.items()}
            d["additionalProperties"] = False
            if self.required:
                d["required"] = list(self.required)
        elif self.kind == "map":
            d["type"] = "object"
            assert self.values is not None
            d["additionalProperties"] = self.values.json()
        elif self.kind == "array":
            d["type"] = "array"
            assert self.values is not None
            d["items"] = self.values.json()
        elif self.kind == "any_of":
            d["anyOf"] = [o.json() for o in self.options]
        else:
            d["type"] = self.kind
        if self.enum:
            d["enum"] = list(self.enum)
        if self.minimum is not None:
            d["minimum"] = self.minimum
        if self.maximum is not None:
            d["maximum"] = self.maximum
        if self.pattern:
            d["pattern"] = self.pattern
        if self.default is not None:
            d["default"] = self.default
        return d


def obj(doc: str, props: dict[str, T], required: tuple[str, ...] = ()) -> T:
    return T("object", doc, props=props, required=required)


def table(doc: str, values: T) -> T:
    """A mapping whose keys the operator chooses (site names, paths, detector names)."""
    return T("map", doc, values=values)


def arr(doc: str, items: T, default: Any = None) -> T:
    return T("array", doc, values=items, default=default)


def string(doc: str, enum: tuple[Any, ...] = (), default: Any = None, pattern: str | None = None) -> T:
    return T("string", doc, enum=enum, default=default, pattern=pattern)


def integer(doc: str, minimum: int | None = None, maximum: int | None = None, default: Any = None,
            enum: tuple[Any, ...] = ()) -> T:
    return T("integer", doc, minimum=minimum, maximum=maximum, default=default, enum=enum)


def any_of(doc: str, *options: T) -> T:
    """A value of any of these shapes (e.g. `URL` or `{url: URL, ...}`); its section's parser reads it."""
    return T("any_of", doc, options=options)


def boolean(doc: str, default: bool) -> T:
    return T("boolean", doc, default=default)


def default_of(cls: Any, name: str) -> Any:
    """The default of a dataclass field, for classes that cannot be built without arguments."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


CONTROLS = arr("Controls (C1-C15 in the policies' CONTROLS.md) this entry enforces; reports cite them.",
               string("A control id.", pattern=CONTROL_PATTERN))
