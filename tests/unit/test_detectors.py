"""Detectors find personal data whatever the field is called, and leave look-alikes alone (C8; 004; 000 preamble)."""

from __future__ import annotations

import pytest

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
