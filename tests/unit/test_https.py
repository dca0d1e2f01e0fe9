"""C1 (000 §7, 001 §7.2): redirect target, HSTS value, Secure flag."""

from __future__ import annotations

import pytest

from privproxy import https, target
from privproxy.https import Settings


def test_redirect_keeps_host_path_and_query():
    assert https.redirect_location("shop.example:8443", "/a/b?x=1&y=2", Settings()) == \
        "https://shop.example:8443/a/b?x=1&y=2"


def test_redirect_port_override():
    assert https.redirect_location("shop.example:80", "/a", Settings(https_port=443)) == "https://shop.example/a"
    assert https.redirect_location("shop.example", "/a", Settings(https_port=8443)) == "https://shop.example:8443/a"
    assert https.redirect_location("[2001:db8::1]:80", "/", Settings(https_port=443)) == "https://[2001:db8::1]/"


@pytest.mark.parametrize("host", ["", "evil.example/path", "a@b", "x y", "exa mple.com", "host:99999999"])
def test_unsafe_host_is_not_echoed(host):
    assert https.redirect_location(host, "/", Settings()) is None


def test_hsts_values():
    assert Settings().hsts == "max-age=63072000; includeSubDomains"
    assert Settings(hsts_preload=True, hsts_include_subdomains=False, hsts_max_age=5).hsts == "max-age=5; preload"


@pytest.mark.parametrize("given,expected", [
    ("a=1", "a=1; Secure"),
    ("a=1; Path=/; HttpOnly", "a=1; Path=/; HttpOnly; Secure"),
    ("a=1; secure", "a=1; secure"),
    ("a=1; Secure; SameSite=None", "a=1; Secure; SameSite=None"),
    ("secure=1; Path=/", "secure=1; Path=/; Secure"),  # a cookie *named* secure is not the attribute
    ("a=1;", "a=1; Secure"),
])
def test_with_secure(given, expected):
    assert https.with_secure(given) == expected


@pytest.mark.parametrize("raw, exempt", [
    ("/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0", True),
    ("/.well-known/acme-challenge/tok_-9", True),
    ("/.well-known/security.txt", False),
    ("/.well-known/acme-challenge/", False),  # no token
    ("/.well-known/acme-challenge/../../admin", False),  # dot segments leave the exempt prefix
    ("/.well-known/acme-challenge/%2e%2e/%2e%2e/admin", False),
    ("/.well-known/acme-challenge/tok/../../../x", False),
    ("/.well-known/acme-challenge//tok", False),  # not the canonical spelling
    ("/.well-known/acme-challenge/tok?x=1", False),  # ACME validation sends no query
    ("/.well-known/acme-challenge/tok;x", False),
    ("/.well-known/acme-challenge/a.b", False),  # not base64url
    ("/.well-known/acme-challenge/%74ok", False),
    ("/.WELL-KNOWN/acme-challenge/tok", False),
])
def test_acme_exemption_covers_canonical_tokens_only(raw, exempt):
    assert Settings().is_exempt(target.parse(raw)) is exempt


def test_other_exempt_prefixes_need_the_canonical_spelling():
    s = Settings(exempt_paths=("/healthz",))
    assert s.is_exempt(target.parse("/healthz"))
    assert s.is_exempt(target.parse("/healthz?full=1"))
    assert not s.is_exempt(target.parse("//healthz"))
    assert not s.is_exempt(target.parse("/healthz/../admin"))
