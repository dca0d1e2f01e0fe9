"""Strict YAML reading that keeps line and column, so every error can say FILE:LINE:COL."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from privproxy.errors import ConfigError, ConfigErrors


def load_text(text: str, path: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise ConfigError(
            f"invalid YAML: {e.problem or e.context}", path=path, line=line, col=col,
            hint="check indentation and quoting on this line",
        ) from None
    except Exception as e:  # noqa: BLE001 - ruamel raises plain errors for a few inputs (e.g. duplicate keys in some modes)
        raise ConfigError(f"invalid YAML: {e}", path=path, hint="check the file's syntax") from None


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
            if isinstance(self.value, CommentedSeq):
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
    if isinstance(m, CommentedMap):
        try:
            kl, kc = m.lc.key(key)
            return kl + 1, kc + 1
        except (KeyError, TypeError):
            pass
    return line, col


def _value_pos(m: Any, key: Any, line: int, col: int) -> tuple[int, int]:
    if isinstance(m, CommentedMap):
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
