"""privproxy.percent decodes and encodes exactly as urllib.parse does, for every input."""

import re
import urllib.parse
from urllib.parse import unquote, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import percent

# Text built from what makes percent-decoding differ: escapes valid and not, `+`, UTF-8 split over escapes,
# bytes that are no UTF-8, non-ASCII characters between escapes, surrogates.
PIECES = st.sampled_from(["%", "%2", "%41", "%4g", "%c3", "%a9", "%C3%A9", "%e2%82", "%ac", "%ff", "%00", "+", "a",
                          "=", "&", "é", "\udc80", "%%", "%2B", "%25", "/", "€", " "])
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=12).map("".join)


@settings(max_examples=1000, deadline=None)
@given(TEXT, st.sampled_from(["replace", "strict", "surrogateescape"]))
def test_unquote_is_urllibs(text, errors):
    try:
        want = unquote(text, errors=errors)
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            percent.unquote(text, errors)
        return
    assert percent.unquote(text, errors) == want


@settings(max_examples=1000, deadline=None)
@given(TEXT)
def test_unquote_plus_is_urllibs(text):
    assert percent.unquote_plus(text) == unquote_plus(text, errors="replace")


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _exact(raw: str) -> tuple[str, bool]:
    """What privproxy.vendors.base read before percent.py: urllib, and a regular expression for the escapes."""
    exact = raw.count("%") == len(_ESCAPE.findall(raw))
    try:
        return unquote_plus(raw, errors="strict"), exact
    except UnicodeDecodeError:
        return unquote_plus(raw, errors="replace"), False


@settings(max_examples=1000, deadline=None)
@given(TEXT)
def test_unquote_exact(text):
    assert percent.unquote_exact(text) == _exact(text)


@pytest.mark.parametrize("raw, want", [
    ("a%41", ("aA", True)), ("a%4", ("a%4", False)), ("%C3%A9", ("é", True)), ("%C3", ("\ufffd", False)),
    ("a+b", ("a b", True)), ("é%41", ("éA", True)), ("é%4x", ("é%4x", False)), ("", ("", True)),
])
def test_unquote_exact_examples(raw, want):
    assert percent.unquote_exact(raw) == want


QUOTED = st.text(alphabet=st.sampled_from("aZ09-._~:/[]!$'()*,;@&=+%#? |\u00e9\u2028\udc80"), max_size=24)


@settings(max_examples=1000, deadline=None)
@given(QUOTED, st.sampled_from(["-._~:/[]!$'()*,;@", "[]$.", "-_.~:/,|$", "", "/"]), st.booleans())
def test_quoter_is_urllibs(text, safe, plus):
    # Text that needs no escape comes back as it is, all else through urllib: the same result either way,
    # also for spaces (quote_plus), non-ASCII and lone surrogates (urllib raises; so does the quoter).
    want_fn = urllib.parse.quote_plus if plus else urllib.parse.quote
    try:
        want = want_fn(text, safe=safe)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            percent.quoter(safe, plus)(text)
        return
    assert percent.quoter(safe, plus)(text) == want


@pytest.mark.parametrize("safe", [" ", "-_ ", "\u00e9"])
def test_a_quoter_refuses_safe_characters_urllib_would_read_otherwise(safe):
    with pytest.raises(ValueError):
        percent.quoter(safe, plus=True)
