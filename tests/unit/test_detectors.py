"""Detectors find personal data whatever the field is called, and leave look-alikes alone (C8; 004; 000 preamble)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproxy import detectors


def found(text: str, name: str) -> list[str]:
    return [text[s:e] for s, e in detectors.FINDERS[name](text)]


@pytest.mark.parametrize("text,expected", [
    ("mail me at jane.doe+news@example.co.jp today", ["jane.doe+news@example.co.jp"]),
    ("a@b.io", ["a@b.io"]),
])
def test_email(text, expected):
    assert found(text, "email") == expected


@pytest.mark.parametrize("text", ["user@localhost", "@handle", "price 1,980@store", "v1.2@3"])
def test_email_false_positives(text):
    assert found(text, "email") == []


@pytest.mark.parametrize("text", ["+81 90-1234-5678", "+81-3-1234-5678", "+1 (415) 555-0100", "090-1234-5678",
                                  "03-1234-5678", "09012345678", "+4915112345678", "(03) 1234-5678"])
def test_phone(text):
    assert found(text, "phone") == [text]


@pytest.mark.parametrize("text", ["2024-01-15", "order 123456789", "1,980", "¥12,800", "1.2.3", "20240115",
                                  "0123456789", "ISBN 978-4-06-519981-7x", "10:30-11:45"])
def test_phone_false_positives(text):
    assert found(text, "phone") == []


def test_ip_and_versions():
    assert found("from 198.51.100.7 and 2001:db8::1", "ip") == ["198.51.100.7", "2001:db8::1"]
    assert found("Chrome/120.0.6099.109 v1.2.3 10.0.19041", "ip") == []


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "4242424242424242"])
def test_card_luhn(card):
    assert found(f"card {card} end", "card") == [card]


@pytest.mark.parametrize("text", ["4111 1111 1111 1112", "order 1234567890123456", "20240115123000",
                                  "tracking 9400111899223856930"])
def test_card_false_positives(text):
    assert found(text, "card") == []


def test_mynumber_check_digit():
    # 12 digits, check digit per the My Number ordinance; 123456789018 is the commonly cited valid example
    assert detectors.mynumber_ok("123456789018")
    assert not detectors.mynumber_ok("123456789012")
    assert found("番号 1234 5678 9018", "mynumber") == ["1234 5678 9018"]
    assert found("order 123456789012", "mynumber") == []


def test_jwt():
    tok = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
    assert found(f"Bearer {tok}", "jwt") == [tok]
    assert found("eyJust a word", "jwt") == []


def test_scan_orders_and_dedupes():
    hits = detectors.scan("jane@example.com 198.51.100.7", ("email", "ip", "phone"))
    assert [h.detector for h in hits] == ["email", "ip"]


_PIECES = ["0", "1", "3", "5", "9", "４", "٣", " ", "-", ".", ":", "(", ")", "+", "@", "a", "f", "x", "e", "y", "J",
           "eyJ", "\u3000", "\t", "example.com", "090", "1234", "5678", "4111", "2001:db8", "::", "198.51."]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_the_cheap_precheck_never_hides_a_hit(text):
    # could_contain() lets values skip the detectors: it must say yes whenever any finder would find something.
    if detectors.scan(text, tuple(detectors.FINDERS)):
        assert detectors.could_contain(text), text


@pytest.mark.parametrize("text", ["+81 90-1234-5678", "(03) 1234-5678", "(03)\u30001234-5678", "09012345678",
                                  "4111 1111 1111 1111", "1234 5678 9018", "198.51.100.7", "fe80::1", "a@b.io",
                                  "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2ln", "+８１ ９０ １２３４ ５６７８"])
def test_the_precheck_says_yes_to_every_kind_of_hit(text):
    assert detectors.scan(text, tuple(detectors.FINDERS)) and detectors.could_contain(text)


@pytest.mark.parametrize("text", ["/products/watch-1234", "page=3", "app.20261122.js", "v1.2", "2024-01-15"])
def test_the_precheck_lets_product_codes_and_dates_skip_the_detectors(text):
    assert not detectors.could_contain(text)
