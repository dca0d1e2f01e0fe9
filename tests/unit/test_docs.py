"""The documentation matches the product: the files it names exist, the commands it shows (and the hints the
code prints) use options those commands have, and the access-log table shows fields as they are written."""

from __future__ import annotations

import argparse
import re
import time

import orjson

from privproxy.access_log import formats
from privproxy.access_log.record import LogRecord
from privproxy.cli import build_parser
from privproxy.outcome import Outcome
from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP = ("addons/", "deploy/", "dashboards/", "docs/", "scripts/", "tests/", "bench/", ".ci/")


def test_every_file_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        text = doc.read_text()
        named = set(re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text))  # Markdown links
        named |= {m for m in re.findall(r"`([A-Za-z0-9_.@/-]+)`", text) if m.startswith(TOP)}
        for name in named:
            if name.startswith(("http", "/")) or "*" in name:
                continue
            if not ((doc.parent / name).exists() or (REPO / name).exists()):
                missing.append(f"{doc.name}: {name}")
    assert missing == []


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _sources():
    yield from DOCS
    yield from sorted((REPO / "addons" / "privproxy").rglob("*.py"))
    yield from (p for p in sorted((REPO / "deploy").rglob("*")) if p.is_file())
    yield from (REPO / "filters.yaml", REPO / "dashboards" / "alerts" / "privproxy.rules.yml")


COMMAND = re.compile(r"privproxy ([a-z-]+)((?:[ \t]+(?:\\\n[ \t]*)?[^\s`'\"|;)>]+)*)")


def test_commands_in_docs_and_hints_use_options_the_command_has():
    """`privproxy CMD [ACTION] ... --flag` wherever it is written (README, docs, error hints, manifests): each
    --flag is one that command has."""
    commands = _subcommands(build_parser())
    wrong, seen = [], 0
    for path in _sources():
        for m in COMMAND.finditer(path.read_text(errors="replace")):
            parser = commands.get(m.group(1))
            if parser is None:
                continue
            words = m.group(2).replace("\\\n", " ").split()
            actions = _subcommands(parser)
            if words and words[0] in actions:
                parser, words = actions[words[0]], words[1:]
            options = {o for a in parser._actions for o in a.option_strings}
            for w in words:
                if w.startswith(("#", "&", "(", "2>")):  # a comment, or the next shell command
                    break
                flag = w.split("=", 1)[0].rstrip(".,:")
                if re.fullmatch(r"--?[a-z][a-z0-9-]*", flag):
                    seen += 1
                    if flag not in options:
                        wrong.append(f"{path.relative_to(REPO)}: privproxy {m.group(1)} ... {flag}")
    assert seen > 50, seen
    assert wrong == []


def test_the_access_log_table_shows_ts_as_it_is_written():
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `ts` |"))
    shown = re.search(r"`(\d{4}-\d\d-\d\dT[0-9:.]+Z)`", row).group(1)
    ts = time.mktime(time.strptime("2026-11-22 10:15:02", "%Y-%m-%d %H:%M:%S")) - time.timezone + 0.123
    record = LogRecord(ts, "r", "default", "192.0.2.0", "GET", "https", "x", "/", "HTTP/1.1", 200, 0, 1.0,
                       Outcome.FORWARDED)
    written = orjson.loads(formats.FORMATS["json"][1](record))["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", written)
    assert written == shown == "2026-11-22T10:15:02.123Z"
