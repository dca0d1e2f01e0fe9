"""Keep full client addresses out of everything the process prints (C2, C15).

mitmproxy attaches the client's address to its log records and writes it at INFO ("client connect"); its
dumper prints it with every flow. The filter below strips the attribute and truncates any address left in
the message text, whatever handler it is attached to. Messages made only of the operator's own settings
(mitmproxy's listening, stopped and cannot-bind lines, privproxy's certificate and reload messages) keep their
addresses as written: an operator needs `::1:8443`, not `:::8443`, and they hold no visitor data.
"""

from __future__ import annotations

import logging

from privproxy import truncate
from privproxy.mitm import internals

OPERATOR = "privproxy_operator"
# `logger.error(..., extra=OPERATOR_MESSAGE)`: only for messages built from the operator's settings and files,
# never from anything a request carries (a log record's attributes are set by the code that logs, not by data).
OPERATOR_MESSAGE = {OPERATOR: True}


def operator_message(record: logging.LogRecord) -> bool:
    return getattr(record, OPERATOR, False) is True or internals.listener_message(record)


class RedactAddresses(logging.Filter):
    def __init__(self, t: truncate.Truncation = truncate.DEFAULT) -> None:
        super().__init__()
        self.t = t

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "client", None):
            record.client = None
        if not operator_message(record):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed log call still gets its addresses masked
                message = str(record.msg)
            masked = truncate.mask_ips(message, self.t)
            if masked != message or record.args:
                record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks can quote the values of local variables via exception messages: keep the type only.
            record.msg = f"{record.msg} ({type(record.exc_info[1]).__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


def install(t: truncate.Truncation = truncate.DEFAULT) -> None:
    """Attach the filter to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactAddresses) for f in handler.filters):
            handler.addFilter(RedactAddresses(t))
