"""log_redaction: no full client address in what the process prints, mitmproxy's records or privproxy's (C2, C15)."""

from __future__ import annotations

import logging

import pytest

from privproxy.mitm import log_redaction
from privproxy.mitm.log_redaction import RedactAddresses


def redacted(record: logging.LogRecord) -> logging.LogRecord:
    assert RedactAddresses().filter(record) is True  # masks, never drops
    return record


def make(msg: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("mitmproxy.proxy", logging.INFO, __file__, 1, msg, args, exc_info)


def test_addresses_in_the_message_and_its_arguments_are_truncated():
    r = redacted(make("client connect %s:%d", "203.0.113.77", 5555))
    assert r.getMessage() == "client connect 203.0.113.0:5555"
    r = redacted(make("from [2001:db8:abcd:12::7]:443"))
    assert "2001:db8:abcd:12::7" not in r.getMessage() and "2001:db8:abcd::" in r.getMessage()


def test_the_client_attribute_mitmproxy_attaches_is_dropped():
    r = make("client connect")
    r.client = ("203.0.113.77", 5555)
    assert redacted(r).client is None


def test_a_traceback_keeps_only_the_exception_type():
    r = redacted(make("failed", exc=ValueError("email jane@example.com from 203.0.113.77")))
    assert r.exc_info is None and r.exc_text is None and r.getMessage() == "failed (ValueError)"


def test_a_malformed_log_call_still_gets_its_addresses_masked():
    r = redacted(make("two %s %s", "203.0.113.77"))  # one argument short: getMessage raises
    assert "203.0.113.77" not in r.getMessage()


@pytest.fixture
def root_handler():
    handler = logging.NullHandler()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_install_is_idempotent(root_handler):
    log_redaction.install()
    log_redaction.install()
    assert sum(isinstance(f, RedactAddresses) for f in root_handler.filters) == 1
