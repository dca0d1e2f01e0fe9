from __future__ import annotations

import os

import pytest
from hypothesis import settings

from privproxy import policy

# CI replays the same examples on every run (a red build always means a change broke something);
# local runs search anew each time, and PRIVPROXY_*_EXAMPLES make the searches longer.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("PRIVPROXY_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["PRIVPROXY_HYPOTHESIS_PROFILE"])


@pytest.fixture
def policy_from_yaml():
    """Build a Policy from YAML text with a fixed pseudonymization secret. The text is read alone, without the
    shipped baseline (no shipped rules merged in, no weakening check), so a test's rules are the only ones; pass
    baseline=True for what an operator's file gets."""

    def make(text: str, path: str = "test.yaml", *, baseline: bool = False) -> policy.Policy:
        return policy.from_text(text, path, secret=b"unit-test-secret", baseline=baseline)

    return make
