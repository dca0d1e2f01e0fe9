"""The canonical request target every matcher uses (privproxy.target).

nginx is the oracle in tests/e2e/test_receivers.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privproxy import target
from privproxy.target import TargetError


@pytest.mark.parametrize("raw, path, key", [
    ("/g/collect", "/g/collect", "/g/collect"),
    ("//g/collect", "/g/collect", "/g/collect"),
    ("/g/%63ollect", "/g/collect", "/g/collect"),
    ("/G/Collect", "/G/Collect", "/g/collect"),
    ("/g/collect/", "/g/collect/", "/g/collect"),
    ("/./g/collect", "/g/collect", "/g/collect"),
    ("/a/../g/collect", "/g/collect", "/g/collect"),
    ("/%2e%2e%2fx/../g/collect", None, None),  # decodes to /../x/..: above the root
    ("/a%2Fb", "/a/b", "/a/b"),  # %2F is a slash to nginx
    ("/matomo.ph%70", "/matomo.php", "/matomo.php"),
    ("/health;x/y", "/health/y", "/health/y"),
    ("/cart;jsessionid=abc", "/cart", "/cart"),
    ("/a\\..\\health", "/health", "/health"),
    ("/", "/", "/"),
    ("/a/b/..", "/a/", "/a"),
])
def test_canonical_paths(raw, path, key):
    if path is None:
        with pytest.raises(TargetError):
            target.parse(raw)
        return
    t = target.parse(raw)
    assert (t.path, t.key) == (path, key)


@pytest.mark.parametrize("raw, reason", [
    ("/x%zz", "bad_percent"), ("/x%4", "bad_percent"), ("/x%", "bad_percent"), ("/x%00y", "nul"),
    ("/..", "above_root"), ("/a/../..", "above_root"), ("/a b", "bad_character"), ("/a\x00", "bad_character"),
    ("/a#frag", "bad_character"), ("/a\x7f", "bad_character"), ("ftp://h/x", "bad_form"), ("x/y", "bad_form"),
    ("http:///x", "bad_form"),
])
def test_unreadable_targets_are_refused(raw, reason):
    with pytest.raises(TargetError) as e:
        target.parse(raw)
    assert e.value.reason == reason


def test_absolute_form_keeps_its_authority_and_goes_out_in_origin_form():
    t = target.parse("http://www.example.com/g/collect?cid=1")
    assert (t.authority, t.path, t.query, t.raw) == ("www.example.com", "/g/collect", "cid=1", "/g/collect?cid=1")
    assert target.parse("https://h?x=1").raw == "/?x=1"


def test_query_is_kept_as_sent_and_not_decoded():
    t = target.parse("/p?a=%2F..%2F&b")
    assert t.query == "a=%2F..%2F&b" and t.path == "/p"
    assert target.parse("/p").query is None and target.parse("/p?").query == ""


def test_canonical_flag():
    assert target.parse("/a/b?x").canonical
    for raw in ("/a//b", "/a/%62", "/a;x", "/a/./b"):
        assert not target.parse(raw).canonical


_segment = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\\;%\x00"), min_size=1, max_size=6)


@given(st.lists(st.one_of(_segment, st.sampled_from([".", "..", "", "%2e", "%2F", "%41"])), max_size=8))
def test_canonical_form_is_a_fixed_point(segments):
    raw = "/" + "/".join(segments)
    try:
        t = target.parse(target.encode_path(raw) if "%" not in raw else raw)
    except TargetError:
        return
    again = target.parse(target.encode_path(t.path))
    assert again.path == t.path
    parts = t.path.split("/")
    assert "." not in parts and ".." not in parts and "//" not in t.path
    assert t.key == t.key.lower()


def test_raw_segments_keep_encoded_slashes_inside_their_segment():
    segments, trailing = target.raw_segments("/a//%2Fb/./c;x=1/../d/")
    assert segments == [("a", ""), ("%2Fb", ""), ("d", "")] and trailing
    assert target.raw_segments("/../../x")[0] == [("x", "")]  # never fails: referrers are not refused
