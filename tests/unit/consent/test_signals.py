import base64

import pytest
from hypothesis import given, settings, strategies as st

from privproxy.consent import signals


def tc_string(purposes_consented=(1, 7, 8, 9), version=2, extra_bits=40, segments=""):
    """An IAB TCF v2 core segment built bit by bit from the field table, independently of the reader."""
    fields = [(version, 6), (16_000_000_000, 36), (16_000_000_000, 36), (7, 12), (1, 12), (1, 6),
              (4 * 64 + 13, 12), (150, 12), (4, 6), (0, 1), (0, 1), (0, 12)]
    bits = "".join(format(v, f"0{n}b") for v, n in fields)
    assert len(bits) == 152
    bits += "".join("1" if p in purposes_consented else "0" for p in range(1, 25))
    bits += "0" * extra_bits
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + segments


def test_all_four_purposes_consented():
    assert not signals.tcf_refuses(tc_string())
    assert not signals.tcf_refuses(tc_string(range(1, 25)))
    assert not signals.tcf_refuses(tc_string(segments=".YAAAAAAAAAAA"))  # publisher segment after the core


@pytest.mark.parametrize("missing", [1, 7, 8, 9])
def test_any_missing_purpose_refuses(missing):
    assert signals.tcf_refuses(tc_string([p for p in (1, 7, 8, 9) if p != missing]))


@pytest.mark.parametrize("text", ["", "!!!", "AAAA", tc_string(version=1), tc_string()[:20], "a" * 5000,
                                  tc_string(extra_bits=0)[:29]])
def test_unreadable_strings_refuse(text):
    assert signals.tcf_refuses(text)


def test_real_cmp_string_shape():
    # A TC string as CMPs write it ("CP..." = version 2), all purposes and no vendors: only its bits matter here.
    s = tc_string(range(1, 11))
    assert s.startswith("C") and not signals.tcf_refuses(s)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises(text):
    assert signals.tcf_refuses(text) in (True, False)


@pytest.mark.parametrize("values, expected", [(["1"], True), ([" 1 "], True), (["0"], False), ([], False),
                                              (["yes"], False), (["0", "1"], True)])
def test_flag_set(values, expected):
    assert signals.flag_set(values) is expected


def test_a_tcf_string_on_a_ga4_hit_is_obeyed():
    from privproxy.vendors import ga4
    from privproxy.vendors.base import Params

    hit = "v=2&tid=G-1&cid=1.2&en=page_view&gdpr=1&gdpr_consent="
    assert not ga4.denied(Params.parse(hit + tc_string()))
    assert ga4.denied(Params.parse(hit + tc_string((1, 7, 8))))
    assert ga4.denied(Params.parse("v=2&tid=G-1&cid=1.2&gdpr=1"))  # GDPR applies, no string: no consent
    assert not ga4.denied(Params.parse("v=2&tid=G-1&cid=1.2&gdpr=0"))
