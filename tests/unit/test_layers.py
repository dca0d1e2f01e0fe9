"""The layers of docs/design.md are enforced: `lint-imports` (run by scripts/test) keeps them, and a planted
import across them breaks it (so the contract is not vacuous)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def lint(addons: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(addons)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")], cwd=addons.parent,
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_tree_keeps_its_layers():
    r = lint(REPO / "addons")
    assert r.returncode == 0, r.stdout[-3000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("module, planted, contract", [
    ("truncate.py", "import privproxy.pipeline", "One-way layers"),  # a primitive reaching up
    ("scrub.py", "import privproxy.vendors", "One-way layers"),  # two modules of one layer
    ("pipeline.py", "import mitmproxy.http", "only the adapters (mitm, cli) import mitmproxy"),
    ("report.py", "import prometheus_client", "Only metrics and the status server"),
])
def test_a_planted_import_breaks_a_contract(tmp_path, module, planted, contract):
    shutil.copytree(REPO / "addons" / "privproxy", tmp_path / "addons" / "privproxy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "addons" / "privproxy" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    r = lint(tmp_path / "addons")
    assert r.returncode != 0 and "BROKEN" in r.stdout
    assert contract in r.stdout.split("Broken contracts", 1)[1]
