from __future__ import annotations

import pytest

from tests.helpers import Origin, start_proxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def origin():
    o = Origin(responses={
        "/cookies": (200, [("Set-Cookie", "session=abc; Path=/; HttpOnly"),
                           ("Set-Cookie", "pref=dark; Path=/; Secure; SameSite=Lax")], b"cookies"),
    })
    yield o
    o.close()


@pytest.fixture
def proxy(tmp_path, origin):
    p = start_proxy(tmp_path / "proxy", origin.url)
    yield p
    p.stop()
