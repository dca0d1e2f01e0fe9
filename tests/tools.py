"""External programs the tests drive (Debian packages that `.ci/run` installs): find them or say what to do."""

from __future__ import annotations

import os
import shutil

import pytest


def require(program: str, package: str) -> str:
    """The program's path. Missing: a failure in CI (PRIVPROXY_REQUIRE_TOOLS=1), a skip that says how elsewhere."""
    path = shutil.which(program)
    if path:
        return path
    message = f"{program} is not installed: sudo apt-get install {package} (the CI script .ci/run does this)"
    if os.environ.get("PRIVPROXY_REQUIRE_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)
