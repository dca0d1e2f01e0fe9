"""Reading one filters.yaml section by its own parser, as policy.py does, for the sections' unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from privproxy.errors import ConfigErrors
from privproxy.yamlsrc import load_text, root


def parse_section(parse: Callable[[Any], Any], name: str, text: str) -> Any:
    """`parse` (a section module's) of section `name` in `text`, raising the errors it collected."""
    top = root(load_text(text, "f.yaml"), "f.yaml")
    got = parse(top.mapping({name}).get(name))
    top.errors.raise_if_any()
    return got


def section_errors(parse: Callable[[Any], Any], name: str, text: str) -> list[str]:
    """The errors of section `name` in `text`, as the operator reads them."""
    with pytest.raises(ConfigErrors) as e:
        parse_section(parse, name, text)
    return [str(x) for x in e.value.errors]
