"""privproxy.script_cache: freshness from the vendor's Cache-Control (bounded), the Content-Type browsers get, stale
copies while the vendor fails, and a bounded size."""

from __future__ import annotations

import pytest

from privproxy import script_cache
from privproxy.script_cache import Entry, ScriptCache


@pytest.mark.parametrize(("header", "seconds"), [
    ("public, max-age=3600", 3600), ("max-age=60, s-maxage=600", 600), ('max-age="120"', 120),
    ("no-cache", 0), ("private, max-age=600", 0), ("no-store", 0), ("", script_cache.DEFAULT_TTL),
    ("public", script_cache.DEFAULT_TTL), ("max-age=31536000, immutable", script_cache.MAX_TTL),
])
def test_ttl(header, seconds):
    assert script_cache.ttl(header) == seconds


def test_content_type():
    assert script_cache.content_type("application/javascript", "https://v.example/s.js") == "application/javascript"
    assert script_cache.content_type("text/plain", "https://v.example/js/script.js") == script_cache.JAVASCRIPT
    assert script_cache.content_type("", "https://v.example/gtag/js?id=G-1") == script_cache.JAVASCRIPT
    assert script_cache.content_type("text/html", "https://v.example/gtag/js?id=G-1") == "text/html"


def entry(body: bytes, fetched: float = 0.0, ttl: float = 60.0) -> Entry:
    return Entry(body, script_cache.JAVASCRIPT, fetched, ttl)


def test_fresh_then_stale_then_gone():
    c = ScriptCache()
    c.store("u", entry(b"js", fetched=100.0, ttl=60.0))
    assert c.fresh("u", 159.0) is not None and c.fresh("u", 160.0) is None
    assert c.stale("u", 160.0 + script_cache.STALE_FOR - 1) is not None
    assert c.stale("u", 161.0 + script_cache.STALE_FOR) is None
    assert entry(b"", fetched=100.0, ttl=60.0).remaining(130.0) == 30


def test_bounded_in_bytes_least_recently_used_first():
    c = ScriptCache(max_total=10)
    c.store("a", entry(b"aaaa"))
    c.store("b", entry(b"bbbb"))
    assert c.fresh("a", 1.0) is not None  # a is now the most recently used
    c.store("c", entry(b"cccc"))
    assert c.fresh("b", 1.0) is None and c.fresh("a", 1.0) is not None and c.size == 8 and len(c) == 2
    c.store("a", entry(b"a"))  # replaced: its old size goes
    assert c.size == 5


def test_a_script_over_the_limit_is_not_kept():
    c = ScriptCache()
    c.store("big", entry(b"x" * (script_cache.MAX_SCRIPT + 1)))
    assert len(c) == 0 and c.size == 0
