"""The node types filters.yaml is declared in: paths into a declaration, values read as declared (absent or null:
the declared default), and the JSON Schema rendering editors get."""

from __future__ import annotations

import dataclasses

import pytest

from privproxy.errors import ConfigErrors
from privproxy.schema_types import T, arr, boolean, default_of, integer, obj, string, table
from privproxy.yamlsrc import load_text, root

DECL = obj("A section.", {
    "size": integer("Bits.", 0, 32, 24),
    "on": boolean("On.", True),
    "mode": string("A mode.", enum=("a", "b"), default="a"),
    "name": string("A name.", default="x"),
    "items": arr("Items.", obj("An item.", {"id": string("Id.")}, required=("id",))),
    "by_name": table("By name.", integer("A count.", 1)),
})


def section(text: str) -> tuple[dict, list[str]]:
    """The section `s:` of a small YAML text as parsed nodes, and the errors reading it as DECL adds."""
    top = root(load_text(text, "f.yaml"), "f.yaml")
    m = top.mapping({"s"})["s"].mapping(DECL.props)
    values = {k: DECL.read(m, k) for k in ("size", "on", "mode", "name")}
    try:
        top.errors.raise_if_any()
    except ConfigErrors as e:
        return values, [str(x) for x in e.errors]
    return values, []


def test_paths_into_a_declaration():
    assert DECL.at("items[]") is DECL.props["items"].values
    assert DECL.at("by_name{}").kind == "integer"
    assert DECL.keys() == {"size", "on", "mode", "name", "items", "by_name"}
    assert DECL.keys("items[]") == {"id"}


@pytest.mark.parametrize("text", ["s: {}\n", "s:\n", "s: {size: null, on: null, mode: null, name: null}\n"])
def test_absent_or_null_reads_the_declared_default(text):
    assert section(text) == ({"size": 24, "on": True, "mode": "a", "name": "x"}, [])


def test_values_are_read_with_the_declared_type_range_and_choices():
    assert section("s: {size: 16, on: false, mode: b, name: y}\n")[0] == {"size": 16, "on": False, "mode": "b",
                                                                          "name": "y"}
    _, errs = section("s: {size: 33, on: yes please, mode: c}\n")
    assert errs == ["f.yaml:1:11: s.size: 33 is out of range — use a value from 0 to 32",
                    "f.yaml:1:19: s.on: expected true or false, got 'yes please'",
                    "f.yaml:1:37: s.mode: `c` is not allowed — use one of: a, b"]


def test_containers_are_read_by_their_section():
    top = root(load_text("s: {items: []}\n", "f.yaml"), "f.yaml")
    m = top.mapping({"s"})["s"].mapping(DECL.props)
    with pytest.raises(TypeError):
        DECL.read(m, "items")


def test_json_schema_rendering():
    assert DECL.json()["properties"]["size"] == {"description": "Bits.", "type": "integer", "minimum": 0,
                                                 "maximum": 32, "default": 24}
    assert DECL.json()["additionalProperties"] is False
    assert DECL.at("items[]").json()["required"] == ["id"]
    assert DECL.props["by_name"].json()["additionalProperties"] == {"description": "A count.", "type": "integer",
                                                                    "minimum": 1}
    assert "default" not in T("string").json()  # no default declared: none rendered


def test_default_of_a_dataclass_field():
    @dataclasses.dataclass
    class C:
        needed: int
        flag: bool = False

    assert default_of(C, "flag") is False
