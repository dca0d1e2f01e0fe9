"""Keep full client addresses out of everything the process prints (C2, C15).

mitmproxy attaches the client's address to its log records and writes it at INFO ("client connect"); its
dumper prints it with every flow. The filter below strips the attribute and truncates any address left in
the message text, whatever handler it is attached to.
"""

from __future__ import annotations

import logging

from privproxy import truncate


class RedactAddresses(logging.Filter):
    def __init__(self, t: truncate.Truncation = truncate.DEFAULT) -> None:
        super().__init__()
        self.t = t

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "client", None):
            record.client = None
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
