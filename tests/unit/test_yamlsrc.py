"""privproxy's YAML reader (libyaml through PyYAML, YAML 1.2's core schema) against ruamel.yaml's round-trip
reader, which privproxy used before: the same values and the same key, value and item positions for every YAML
file of the repository and for generated documents; and what it refuses."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from privproxy.errors import ConfigError
from privproxy.yamlsrc import Map, Seq, load_text
from tests.helpers import REPO

FILES = sorted(p for p in REPO.glob("**/*.yaml") if ".venv" not in p.parts and ".git" not in p.parts)


def ruamel(text: str):
    return YAML(typ="rt").load(text)


def same(ours, theirs, where: str = "") -> None:
    """Equal values, and where a mapping or list was read, the same positions of its keys, values and items."""
    if isinstance(theirs, CommentedMap):
        assert isinstance(ours, Map) and list(ours) == list(theirs), where
        for k in theirs:
            assert ours.lc.key(k) == tuple(theirs.lc.key(k)), f"{where}.{k} key"
            assert ours.lc.value(k) == tuple(theirs.lc.value(k)), f"{where}.{k} value"
            same(ours[k], theirs[k], f"{where}.{k}")
    elif isinstance(theirs, CommentedSeq):
        assert isinstance(ours, Seq) and len(ours) == len(theirs), where
        for i, v in enumerate(theirs):
            assert ours.lc.item(i) == tuple(theirs.lc.item(i)), f"{where}[{i}]"
            same(ours[i], v, f"{where}[{i}]")
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours), where
    else:
        assert ours == theirs and type(ours) in (type(theirs), *type(theirs).__mro__), (where, ours, theirs)


def test_the_files_of_the_repository_read_as_before():
    assert len(FILES) >= 10
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        same(load_text(text, str(path)), ruamel(text), path.name)


@pytest.mark.parametrize("plain, value", [
    ("on", "on"), ("yes", "yes"), ("no", "no"), ("off", "off"), ("y", "y"),  # YAML 1.1's booleans are strings
    ("true", True), ("False", False), ("~", None), ("null", None), ("", None),
    ("012", 12), ("0o12", 10), ("0x1F", 31), ("1_000", 1000), ("-7", -7), ("+3", 3),
    ("1e3", 1000.0), (".5", 0.5), ("-.inf", float("-inf")), ("1.0", 1.0),
    ("2026-12-01", datetime.date(2026, 12, 1)), ("1:20", "1:20"), ("0.0.0.0/0", "0.0.0.0/0"), ("JP", "JP"),
    (".", "."), ("-.", "-."), (".e26", ".e26"), ("1.", 1.0), ("!!float 3", 3.0),
    ("2020-1-1 1:00:00", datetime.datetime(2020, 1, 1, 1, 0)),
])
def test_plain_scalars_as_yaml_1_2_core_reads_them(plain, value):
    got = load_text(f"k: {plain}\n", "f.yaml")["k"]
    assert got == value and type(got) is type(value)
    assert ruamel(f"k: {plain}\n")["k"] == value  # as the previous reader


def test_anchors_aliases_and_merge_keys():
    data = load_text("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nl: [*b, *b]\n", "f.yaml")
    assert data["m"] == {"x": 1, "y": 3} and data["l"][0] is data["base"]
    assert data["m"].lc.key("y") == (3, 2) and data["m"].lc.key("x") == (0, 10)  # a merged key: where it is written


@pytest.mark.parametrize("text, where, message", [
    ("a: 1\nb: 2\na: 3\n", "3:1", "duplicate key `a` (first on line 1)"),
    ("a: [1\n", "2:1", "did not find expected ',' or ']'"),
    ("a: !python/object x\n", "1:4", "the tag `!python/object` is not one privproxy reads"),
    ("a: !!int x\n", "1:4", "`x` is not a valid int"),
    ("a: &x [*x]\n", "1:4", "an alias refers to the node it is in"),
    ("a: 1\nb: \"x\x01\"\n", "2:6", "character 0x0001"),
    ("? [1]\n: 2\n", "1:3", "a mapping or a list as a key"),
    ("m: {<<: 5}\n", "1:9", "`<<` merges a mapping or a list of mappings"),
    ("d: 2026-13-45\n", "1:4", "`2026-13-45` is not a valid timestamp"),
    ("a: " + "[" * 500 + "]" * 500 + "\n", "1:67", "nested deeper than 64 levels"),
    ("a: !!bool yes\n", "1:4", "`yes` is not a valid bool"),  # a tag does not make YAML 1.1's spellings true
    ("a: !!int --5\n", "1:4", "`--5` is not a valid int"),
    ("# ログの設定\n# 日本語\nwhy: \"a\x07\"\n", "3:8", "character 0x0007"),  # libyaml counts bytes, not characters
    ("b: &b {" + ", ".join(f"k{i}: 1" for i in range(200)) + "}\nl:\n" + "  - {<<: *b}\n" * 60, "53:6",
     "merge keys copy more than 10000 keys"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "1:1003", "exceeded maximum nesting depth"),
])
def test_what_it_refuses_says_where(text, where, message):
    with pytest.raises(ConfigError) as e:
        load_text(text, "f.yaml")
    assert str(e.value).startswith(f"f.yaml:{where}: invalid YAML: ") and message in str(e.value), str(e.value)


_KEYS = st.sampled_from(["a", "b", "rules", "id", "on", "yes", "1", "x y", "ü"])
_SCALARS = st.one_of(
    st.sampled_from(["1", "-2", "0x1f", "0o7", "1.5", ".5", "1e3", "true", "False", "~", "null", "yes", "no", "on",
                     "2026-12-01", "a b", "'q'", '"d\\n"', "1:2", "0.0.0.0/0", "/health/**", "[]", "{}"]),
    st.from_regex(r"[a-z0-9_./-]{1,8}", fullmatch=True).filter(lambda s: s[0] not in "-." and s not in ("_",)))


def _doc(depth: int = 0):
    if depth >= 3:
        return _SCALARS
    inner = st.deferred(lambda: _doc(depth + 1))
    return st.one_of(_SCALARS, st.dictionaries(_KEYS, inner, min_size=1, max_size=4),
                     st.lists(inner, min_size=1, max_size=4))


def _render(value, indent: int, flow: bool) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        if flow:
            return "{" + ", ".join(f"{k}: {_render(v, 0, True)}" for k, v in value.items()) + "}"
        return "".join(f"\n{pad}{k}:" + (f" {_render(v, 0, True)}" if not isinstance(v, (dict, list)) or not v
                                          else _render(v, indent + 2, False)) for k, v in value.items())
    if isinstance(value, list):
        if flow:
            return "[" + ", ".join(_render(v, 0, True) for v in value) + "]"
        return "".join(f"\n{pad}- " + (_render(v, 0, True) if not isinstance(v, (dict, list))
                                       else _render(v, indent + 2, True)) for v in value)
    return value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _doc(), min_size=1, max_size=5), st.booleans())
def test_generated_documents_read_as_before(doc, flow):
    text = _render(doc, 0, flow).lstrip("\n") + "\n"
    try:
        theirs = ruamel(text)
    except Exception:  # noqa: BLE001 - a document the previous reader refused must be refused now
        with pytest.raises(ConfigError):
            load_text(text, "f.yaml")
        return
    same(load_text(text, "f.yaml"), theirs, "")
