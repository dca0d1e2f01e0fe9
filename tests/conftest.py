from __future__ import annotations

import pytest

from privproxy import policy


@pytest.fixture
def policy_from_yaml():
    """Build a Policy from YAML text with a fixed pseudonymization secret."""

    def make(text: str, path: str = "test.yaml") -> policy.Policy:
        return policy.from_text(text, path, secret=b"unit-test-secret")

    return make
