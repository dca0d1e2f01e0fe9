from __future__ import annotations

import pytest

from tests.helpers import Origin, start_proxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def origin():
    o = Origin(responses={
        "/cookies": (200, [("Set-Cookie", "session=abc; Path=/; HttpOnly"),
                           ("Set-Cookie", "pref=dark; Path=/; Secure; SameSite=Lax")], b"cookies"),
        "/tagged": (200, [("Set-Cookie", "_ga=GA1.1.918273645.1700000000; Path=/; Max-Age=63072000"),
                          ("Set-Cookie", "session=abc; Path=/; HttpOnly"),
                          ("Set-Cookie", "_fbp=fb.1.1700000000.5647382910; Path=/")], b"tagged"),
    })
    yield o
    o.close()


@pytest.fixture
def proxy(tmp_path, origin):
    p = start_proxy(tmp_path / "proxy", origin.url)
    yield p
    p.stop()
