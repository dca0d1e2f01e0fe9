"""Strict YAML reading that keeps line and column, so every error can say FILE:LINE:COL.

YAML 1.2's core schema (`on`, `yes`, `no` are strings, as in ruamel.yaml's reading) on libyaml's parser through
PyYAML: ruamel.yaml's pure-Python round-trip reader took 0.07 s for the shipped filters.yaml and 0.06 s to import,
a third of `filter-log`'s start-up that every run and every reload paid; libyaml parses it in 4 ms. Values are
plain dicts and lists that remember where each key, value and item was written (`lc`, as ruamel's do)."""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml import nodes
from yaml.resolver import BaseResolver

from privproxy.errors import ConfigError, ConfigErrors

_TAG = "tag:yaml.org,2002:"
MAX_DEPTH = 64  # filters.yaml nests five levels deep; what goes further is a mistake or an attack


class _CoreSchema(BaseResolver):
    """Plain scalars typed by YAML 1.2's core schema, plus dates and timestamps (as ruamel.yaml reads them)."""


# What each kind's text may be, implicit (a plain scalar) or tagged (`!!bool`): the core schema's spellings.
_SPELLINGS = {
    "null": (r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    "bool": (r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    "int": (r"[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+", list("-+0123456789")),
    "float": (r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*|[0-9][0-9_]*(?=[eE]))(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+0123456789.")),
    "timestamp": (r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
                  r"(?:\.([0-9]*))?(?:[ \t]*(Z|([-+])([0-9]{1,2})(?::([0-9]{2}))?))?)?", list("0123456789")),
    "merge": (r"<<", ["<"]),
}
_FULL = {kind: re.compile(f"(?:{pattern})") for kind, (pattern, _) in _SPELLINGS.items()}
for _kind, (_pattern, _first) in _SPELLINGS.items():
    _CoreSchema.add_implicit_resolver(_TAG + _kind, re.compile(f"^(?:{_pattern})$"), _first)
MAX_MERGED = 10_000  # keys merge keys (`<<: *x`) may copy in one file: each is a copy, so many are a memory bomb


try:
    from yaml.cyaml import CParser as _Parser
except ImportError:  # PyYAML built without libyaml: the same reading in Python (slower)
    _Parser = None


if _Parser is not None:
    class _CReader(_Parser, _CoreSchema):
        """libyaml's parser and composer with the core schema's resolver, as PyYAML's CBaseLoader is built."""

        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            _CoreSchema.__init__(self)


class _PyReader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _CoreSchema):
    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _CoreSchema.__init__(self)


_Reader = _CReader if _Parser is not None else _PyReader


class Positions:
    """Where a mapping's keys and values, or a list's items, were written: (line, column), both from 0."""

    __slots__ = ("_keys", "_values")

    def __init__(self) -> None:
        self._keys: dict[Any, tuple[int, int]] = {}
        self._values: dict[Any, tuple[int, int]] = {}

    def key(self, key: Any) -> tuple[int, int]:
        return self._keys[key]

    def value(self, key: Any) -> tuple[int, int]:
        return self._values[key]

    def item(self, index: int) -> tuple[int, int]:
        return self._values[index]


class Map(dict):
    """A YAML mapping that knows where its keys and values are (`lc.key(k)`, `lc.value(k)`)."""

    lc: Positions


class Seq(list):
    """A YAML sequence that knows where its items are (`lc.item(i)`)."""

    lc: Positions


class _Invalid(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


def load_text(text: str, path: str) -> Any:
    try:
        reader = _Reader(text)
        try:
            node = reader.get_single_node()
        finally:
            reader.dispose()
        return None if node is None else _Builder().build(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise ConfigError(
            f"invalid YAML: {e.problem or e.context}", path=path, line=line, col=col,
            hint="check indentation and quoting on this line",
        ) from None
    except _Invalid as e:
        raise ConfigError(f"invalid YAML: {e}", path=path, line=e.mark.line + 1, col=e.mark.column + 1,
                          hint="check this line") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, at an offset into the text
        c = e.character  # libyaml: an int and a byte offset; PyYAML's own reader: a str and a character offset
        before = text.encode("utf-8", "surrogatepass")[:e.position].decode("utf-8", "ignore") \
            if isinstance(c, int) else text[:e.position]
        raise ConfigError(f"invalid YAML: character {c if isinstance(c, int) else ord(c):#06x} ({e.reason})", path=path,
                          line=before.count("\n") + 1, col=len(before) - before.rfind("\n"),
                          hint="remove the control character; save the file as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", path=path, hint="check the file's syntax") from None
    except RecursionError:  # PyYAML's Python composer, without libyaml, recurses once per level
        raise ConfigError("invalid YAML: nested too deeply", path=path, hint="check the brackets") from None
    except UnicodeError:
        raise ConfigError("invalid YAML: not UTF-8 text", path=path, hint="save the file as UTF-8") from None


class _Builder:
    """Python values from composed nodes: an alias is the same object as its anchor, a key may appear once."""

    def __init__(self) -> None:
        self._done: dict[int, Any] = {}
        self._open: set[int] = set()
        self._merged = 0

    def build(self, node: nodes.Node) -> Any:
        if id(node) in self._done:
            return self._done[id(node)]
        if isinstance(node, nodes.ScalarNode):
            return _scalar(node)
        if id(node) in self._open:
            raise _Invalid("an alias refers to the node it is in", node.start_mark)
        if len(self._open) >= MAX_DEPTH:  # before Python's recursion limit (libyaml's own is 1000 levels)
            raise _Invalid(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        self._open.add(id(node))
        out = self._sequence(node) if isinstance(node, nodes.SequenceNode) else self._mapping(node)
        self._open.discard(id(node))
        self._done[id(node)] = out
        return out

    def _sequence(self, node: nodes.SequenceNode) -> Seq:
        _known(node, "seq")
        out, lc = Seq(), Positions()
        for i, item in enumerate(node.value):
            lc._values[i] = (item.start_mark.line, item.start_mark.column)
            out.append(self.build(item))
        out.lc = lc
        return out

    def _mapping(self, node: nodes.MappingNode) -> Map:
        _known(node, "map")
        out, lc = Map(), Positions()
        merged: list[tuple[Any, Any, tuple[int, int], tuple[int, int]]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merged.extend(self._merge(value_node, key_node.start_mark))
                continue
            key = self.build(key_node)
            if isinstance(key, (dict, list)):
                raise _Invalid("a mapping or a list as a key", key_node.start_mark)
            if key in out:
                first = lc._keys[key][0] + 1
                raise _Invalid(f"duplicate key `{key}` (first on line {first})", key_node.start_mark)
            lc._keys[key] = (key_node.start_mark.line, key_node.start_mark.column)
            lc._values[key] = (value_node.start_mark.line, value_node.start_mark.column)
            out[key] = self.build(value_node)
        for key, value, kpos, vpos in merged:  # `<<: *base`: the mapping's own keys win
            if key not in out:
                out[key], lc._keys[key], lc._values[key] = value, kpos, vpos
        out.lc = lc
        return out

    def _merge(self, node: nodes.Node, at: Any) -> list[tuple[Any, Any, tuple[int, int], tuple[int, int]]]:
        sources = node.value if isinstance(node, nodes.SequenceNode) else [node]
        out = []
        for source in sources:
            m = self.build(source)
            if not isinstance(m, Map):
                raise _Invalid("`<<` merges a mapping or a list of mappings", source.start_mark)
            self._merged += len(m)
            if self._merged > MAX_MERGED:
                raise _Invalid(f"merge keys copy more than {MAX_MERGED} keys in all", at)
            out.extend((k, v, m.lc.key(k), m.lc.value(k)) for k, v in m.items())
        return out


def _known(node: nodes.Node, kind: str) -> None:
    if node.tag not in (_TAG + kind, None):
        raise _Invalid(f"the tag `{node.tag}` is not one privproxy reads", node.start_mark)


def _scalar(node: nodes.ScalarNode) -> Any:
    tag, text = node.tag, node.value
    kind = tag[len(_TAG):] if tag.startswith(_TAG) else ""
    if kind in _FULL and _FULL[kind].fullmatch(text) is None and not (kind == "float" and _FULL["int"].fullmatch(text)):
        # `!!bool yes`: not a spelling of the kind (an int's is a float's too)
        raise _Invalid(f"`{text}` is not a valid {kind}", node.start_mark)
    try:
        if kind == "str":
            return text
        if kind == "null":
            return None
        if kind == "bool":
            return text.lower() == "true"
        if kind == "int":
            return _int(text)
        if kind == "float":
            return _float(text)
        if kind == "timestamp":
            return _timestamp(text)
    except ValueError:
        raise _Invalid(f"`{text}` is not a valid {kind}", node.start_mark) from None
    raise _Invalid(f"the tag `{tag}` is not one privproxy reads", node.start_mark)


def _int(text: str) -> int:
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    for prefix, base in (("0o", 8), ("0x", 16), ("0b", 2)):
        if t.startswith(prefix):
            return sign * int(t[2:], base)
    return sign * int(t, 10)


def _float(text: str) -> float:
    t = text.replace("_", "").lower()
    if t.endswith("inf"):
        return float("-inf") if t.startswith("-") else float("inf")
    return float("nan") if t.endswith("nan") else float(t)


def _timestamp(text: str) -> datetime.date | datetime.datetime:
    """YAML's timestamp: a date, or a date and time (`T` or spaces between; without a zone a naive time, as
    ruamel.yaml reads it)."""
    m = _FULL["timestamp"].fullmatch(text)  # its groups: the parts
    if m is None:
        raise ValueError(text)
    y, mo, d, hh, mm, ss, frac, zone, sign, zh, zm = m.groups()
    if hh is None:
        return datetime.date(int(y), int(mo), int(d))
    tz = datetime.UTC if zone else None
    if zone and zone != "Z":
        offset = datetime.timedelta(hours=int(zh), minutes=int(zm or 0))
        tz = datetime.timezone(-offset if sign == "-" else offset)
    return datetime.datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss), int((frac or "").ljust(6, "0")[:6]),
                             tzinfo=tz)


@dataclass
class Errors:
    """Collects errors while a whole file is read, so one run lists every problem."""

    path: str
    found: list[ConfigError] = field(default_factory=list)

    def add(self, message: str, line: int = 0, col: int = 0, hint: str = "") -> None:
        self.found.append(ConfigError(message, path=self.path, line=line, col=col, hint=hint))

    def raise_if_any(self) -> None:
        if self.found:
            raise ConfigErrors(sorted(self.found, key=lambda e: (e.line, e.col)))


@dataclass
class Node:
    """A YAML value with its position and a dotted name, for error messages."""

    value: Any
    name: str
    line: int
    col: int
    errors: Errors

    def error(self, message: str, hint: str = "") -> None:
        self.errors.add(f"{self.name}: {message}", self.line, self.col, hint)

    # --- mappings -------------------------------------------------------------------------------------
    def mapping(self, allowed: set[str] | dict[str, Any]) -> dict[str, Node]:
        """Children of a mapping; unknown keys are errors with a did-you-mean hint."""
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            self.error(f"expected a mapping, got {_kind(self.value)}", "write `key: value` pairs indented under it")
            return {}
        out: dict[str, Node] = {}
        for key, value in self.value.items():
            kline, kcol = _key_pos(self.value, key, self.line, self.col)
            vline, vcol = _value_pos(self.value, key, kline, kcol)
            name = f"{self.name}.{key}" if self.name else str(key)
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
                self.errors.add(f"unknown key `{name}`", kline, kcol, hint)
                continue
            out[str(key)] = Node(value, name, vline, vcol, self.errors)
        return out

    def items(self) -> Iterator[tuple[str, Node]]:
        """Free-form mapping (keys chosen by the operator, e.g. site names)."""
        if self.value is None:
            return
        if not isinstance(self.value, dict):
            self.error(f"expected a mapping, got {_kind(self.value)}")
            return
        for key, value in self.value.items():
            kline, kcol = _key_pos(self.value, key, self.line, self.col)
            vline, vcol = _value_pos(self.value, key, kline, kcol)
            yield str(key), Node(value, f"{self.name}.{key}", vline, vcol, self.errors)

    def seq(self) -> list[Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.error(f"expected a list, got {_kind(self.value)}", "write one `- item` per line")
            return []
        out = []
        for i, v in enumerate(self.value):
            line, col = self.line, self.col
            if isinstance(self.value, Seq):
                try:
                    line, col = self.value.lc.item(i)
                    line, col = line + 1, col + 1
                except (KeyError, TypeError, IndexError):
                    pass
            out.append(Node(v, f"{self.name}[{i}]", line, col, self.errors))
        return out

    # --- scalars --------------------------------------------------------------------------------------
    def string(self, default: str = "") -> str:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, (str, int, float)):
            self.error(f"expected a string, got {_kind(self.value)}", "quote the value")
            return default
        return str(self.value)

    def boolean(self, default: bool = False) -> bool:
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            self.error(f"expected true or false, got {self.value!r}")
            return default
        return self.value

    def integer(self, default: int = 0, lo: int | None = None, hi: int | None = None) -> int:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.error(f"expected a whole number, got {self.value!r}")
            return default
        if (lo is not None and self.value < lo) or (hi is not None and self.value > hi):
            self.error(f"{self.value} is out of range", f"use a value from {lo} to {hi}")
            return default
        return int(self.value)

    def choice(self, choices: tuple[str, ...] | list[str], default: str) -> str:
        value = self.string(default)
        if value not in choices:
            close = difflib.get_close_matches(value, list(choices), n=3)
            hint = (f"did you mean {' or '.join(f'`{c}`' for c in close)}?" if close
                    else f"use one of: {', '.join(choices)}")
            self.error(f"`{value}` is not allowed", hint)
            return default
        return value

    def strings(self) -> tuple[str, ...]:
        if isinstance(self.value, str):
            return (self.value,)
        return tuple(n.string() for n in self.seq())

    def parsed(self, parse: Callable[[str], Any], what: str, hint: str = "") -> Any:
        """A string converted by `parse`; a ValueError becomes a positioned error."""
        text = self.string()
        try:
            return parse(text)
        except ValueError as e:
            self.error(f"`{text}` is not a valid {what} ({e})", hint)
            return None


def root(data: Any, path: str) -> Node:
    return Node(data, "", 1, 1, Errors(path))


BUILTIN = "<built-in filters.yaml>"


def beside(path: str, value: str) -> str:
    """A file named in filters.yaml: relative to filters.yaml (`path`), not to wherever the proxy started."""
    if value and path not in ("<string>", BUILTIN) and not value.startswith("/"):
        return str(Path(path).resolve().parent / value)
    return value


def _key_pos(m: Any, key: Any, line: int, col: int) -> tuple[int, int]:
    if isinstance(m, Map):
        try:
            kl, kc = m.lc.key(key)
            return kl + 1, kc + 1
        except (KeyError, TypeError):
            pass
    return line, col


def _value_pos(m: Any, key: Any, line: int, col: int) -> tuple[int, int]:
    if isinstance(m, Map):
        try:
            vl, vc = m.lc.value(key)
            return vl + 1, vc + 1
        except (KeyError, TypeError):
            pass
    return line, col


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return f"the boolean {v}"
    return f"{type(v).__name__} {v!r}"


__all__ = ["BUILTIN", "ConfigErrors", "Node", "beside", "load_text", "root"]
