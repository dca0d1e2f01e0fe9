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


def test_operator_messages_keep_the_operators_own_addresses():
    # privproxy's own messages about its settings carry the marker; a visitor cannot set a record's attributes
    r = logging.LogRecord("privproxy.mitm.certificates", logging.ERROR, __file__, 1, "listening on %s:%d",
                          ("::1", 8443), None)
    r.__dict__.update(log_redaction.OPERATOR_MESSAGE)
    assert redacted(r).getMessage() == "listening on ::1:8443"
    # mitmproxy's record of a listener that cannot bind: the operator's --listen and --upstream, as given
    bind = ("[Errno 98] reverse proxy to http://10.0.1.5:8080 failed to listen on ::1:8443 with [Errno 98] error "
            "while attempting to bind on address ('::1', 8443, 0, 0): address already in use")
    r = logging.LogRecord("mitmproxy.addons.proxyserver", logging.ERROR, __file__, 1, bind, (), None)
    assert redacted(r).getMessage() == bind
    # and its start-up line (mitmdump prints it)
    up = "reverse proxy to http://10.0.1.5:8080 listening at [::1]:8443."
    r = logging.LogRecord("mitmproxy.proxy.mode_servers", logging.INFO, __file__, 1, up, (), None)
    assert redacted(r).getMessage() == up


def test_everything_else_stays_masked_whoever_logs_it():
    for name in ("mitmproxy.addons.proxyserver", "privproxy.mitm.certificates", "mitmproxy.proxy.server"):
        r = logging.LogRecord(name, logging.ERROR, __file__, 1, "peer %s failed to send", ("203.0.113.77",), None)
        assert redacted(r).getMessage() == "peer 203.0.113.0 failed to send"
    r = logging.LogRecord("privproxy", logging.ERROR, __file__, 1, "from 203.0.113.77", (), None)
    r.privproxy_operator = "yes"  # only the marker itself (True) counts
    assert "203.0.113.77" not in redacted(r).getMessage()


def test_an_operator_message_still_drops_its_traceback():
    r = make("cannot read %s", "/etc/tls/tls.key", exc=PermissionError("203.0.113.77"))
    r.__dict__.update(log_redaction.OPERATOR_MESSAGE)
    assert redacted(r).getMessage() == "cannot read /etc/tls/tls.key (PermissionError)" and r.exc_info is None
