"""mitmproxy adapters: thin addon classes over privproxy's plain-Python core.

List order is the data flow: options and policy, then classify (client, site), then HTTPS enforcement,
then the log record, then metrics that read what the others decided.
"""

from __future__ import annotations

from privproxy.mitm.access_log import AccessLog
from privproxy.mitm.exporter import MetricsExporter
from privproxy.mitm.filter import PrivacyFilter
from privproxy.mitm.https import EnforceHttps
from privproxy.mitm.options import Options
from privproxy.mitm.reload import PolicyReloader
from privproxy.mitm.runtime import Runtime


def addons(rt: Runtime | None = None) -> list[object]:
    rt = rt or Runtime()
    return [Options(rt), PrivacyFilter(rt), EnforceHttps(rt), AccessLog(rt), MetricsExporter(rt), PolicyReloader(rt)]
