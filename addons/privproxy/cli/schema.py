"""`privproxy schema [--write FILE]`: the JSON Schema of filters.yaml, generated from privproxy.schema."""

from __future__ import annotations

import json
from pathlib import Path

from privproxy import schema

SHIPPED = Path(schema.__file__).with_name("filters.schema.json")


def add_parser(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of filters.yaml (for editors)")
    p.add_argument("--write", metavar="FILE", help="write it to FILE instead of printing it")
    p.set_defaults(func=cmd)


def render() -> str:
    return json.dumps(schema.json_schema(), indent=2, ensure_ascii=False) + "\n"


def cmd(args) -> int:
    text = render()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
