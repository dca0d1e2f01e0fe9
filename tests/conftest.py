from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI replays the same examples on every run (a red build always means a change broke something);
# local runs search anew each time, and PRIVPROXY_*_EXAMPLES make the searches longer.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("PRIVPROXY_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["PRIVPROXY_HYPOTHESIS_PROFILE"])

from privproxy import policy


@pytest.fixture
def policy_from_yaml():
    """Build a Policy from YAML text with a fixed pseudonymization secret."""

    def make(text: str, path: str = "test.yaml") -> policy.Policy:
        return policy.from_text(text, path, secret=b"unit-test-secret")

    return make
