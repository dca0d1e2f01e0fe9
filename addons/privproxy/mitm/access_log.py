"""AccessLog: exactly one scrubbed record per answered flow, buffered and flushed every second (C2, C3)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from privproxy import pipeline
from privproxy.access_log import formats
from privproxy.access_log.rotation import Rotation
from privproxy.access_log.sink import Sink
from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from privproxy.outcome import LogStream, Outcome, Stage

logger = logging.getLogger(__name__)
BUFFER_LIMIT = 256 * 1024  # responses up to this size (with a Content-Length) are not streamed


class AccessLog:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self._ticker: asyncio.Task[None] | None = None
        self._built: tuple[object, ...] | None = None  # (dir, formats, rotation, linked...) the sinks were built for

    def configure(self, updated: set[str]) -> None:
        if "privproxy_log_format" in updated:
            fmt = ctx.options.privproxy_log_format
            if fmt and fmt not in formats.FORMAT_CHOICES:
                raise exceptions.OptionsError(
                    f"privproxy_log_format {fmt!r}: use one of {', '.join(formats.FORMAT_CHOICES)}")
        self.sync()

    def sync(self) -> None:
        """(Re)build the sinks when the log directory, the format or filters.yaml's logging settings change."""
        policy = self.shared.policy
        settings = policy.logging if policy is not None else None
        d = ctx.options.privproxy_log_dir
        fmt = ctx.options.privproxy_log_format or (settings.format if settings else "json")
        rotation = settings.rotation if settings else None
        want = (d, fmt, rotation, policy.consent.enabled if policy else False,
                policy.consent.linked_retention_days if policy else None)
        if want == self._built:
            return
        self._built = want
        for sink in self.shared.sinks.values():
            sink.close()
        self.shared.sinks = {}
        if self.shared.linked is not None:
            self.shared.linked.close()
            self.shared.linked = None
        if d:
            try:  # at start, so tools reading the directory (dsr, log shippers) find it before the first flush
                Path(d).mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # the sinks meet the same error at their first write, and count it with its reason
            for name in formats.selected(fmt):
                filename, _ = formats.FORMATS[name]
                sink = Sink(Path(d) / filename, LogStream.ACCESS, self._on_error, rotation=rotation,
                            shared=self.shared.shared_logs)
                sink.expire()
                self.shared.sinks[name] = sink
            if policy is not None and policy.consent.enabled:
                linked_rotation = dataclasses.replace(rotation or Rotation(),
                                                      retention_days=policy.consent.linked_retention_days)
                self.shared.linked = Sink(Path(d) / formats.LINKED_FILE, LogStream.LINKED, self._on_error,
                                          locked=True, rotation=linked_rotation, shared=self.shared.shared_logs)
                self.shared.linked.expire()

    def _on_error(self, stream: str, reason: str) -> None:
        self.shared.metrics.log_error(stream, reason)

    def running(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self.sync()  # a reloaded filters.yaml may change format or rotation
                for sink in self.shared.all_sinks():
                    sink.flush_if_due()
            except Exception as e:  # noqa: BLE001 - the ticker must survive anything, or logs stop being flushed
                self.shared.metrics.failure(Stage.ACCESS_LOG)
                logger.error("privproxy: access log maintenance failed (%s)", type(e).__name__)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        flowview.count_response(flow, BUFFER_LIMIT)

    def response(self, flow: http.HTTPFlow) -> None:
        c = flowview.context(flow)
        state = c.state
        outcome = Outcome.FORWARDED
        status = flowview.response_status(flow)
        if state is not None and state.redirect and status == state.policy.https.redirect_status:
            outcome = Outcome.REDIRECTED
        elif state is not None and state.refused:
            outcome = Outcome.REFUSED
        elif flowview.failed(flow):
            outcome = Outcome.UPSTREAM_ERROR
        if c.outcome is not None:
            outcome = c.outcome  # e.g. upstream_timeout: the proxy's own 504
        self.finish(flow, status, flowview.response_size(flow), outcome)

    def error(self, flow: http.HTTPFlow) -> None:
        """A flow that ended without its response hook: refused by the HTTP layer (its head, its framing, its
        size), left by its client, or failed at the origin. The record has the status the visitor got."""
        c = flowview.context(flow)
        answer = c.answer
        if answer is None:
            if not flowview.answered(flow):  # a cause the guarded layer did not see: as mitmproxy answers, 502
                self.finish(flow, 502, None, c.outcome or Outcome.UPSTREAM_ERROR)
            return
        outcome = answer.outcome
        if outcome == Outcome.UPSTREAM_ERROR and c.outcome is not None:
            outcome = c.outcome  # e.g. upstream_timeout on an HTTP/2 origin
        if c.state is None:
            self.begin_refused(flow, c)
        self.finish(flow, answer.status, flowview.streamed_bytes(flow), outcome)

    def begin_refused(self, flow: http.HTTPFlow, c: flowview.FlowContext) -> None:
        """A request refused before privproxy classified it (an unreadable or oversized head): classified now by
        the same pipeline, so its record has the truncated client address, and `-` for what is unknown."""
        policy = self.shared.policy
        if policy is None:
            return
        try:
            view = flowview.view(flow)
            c.state, c.view = pipeline.begin(view, policy, self.shared.locator), view
        except Exception as e:  # noqa: BLE001 - finish() then counts the record as failed: nothing unscrubbed is written
            logger.error("privproxy: classifying a refused request failed (%s)", type(e).__name__)

    def finish(self, flow: http.HTTPFlow, status: int, size: int | None, outcome: Outcome) -> None:
        c = flowview.context(flow)
        if c.logged:
            return
        c.logged = True
        state, view = c.state, c.view
        m = self.shared.metrics
        if state is None or view is None:
            m.failure(Stage.ACCESS_LOG)
            return
        try:
            record = pipeline.log_record(
                state, view, status, size, outcome, flowview.ended(flow),
                user_agent=view.first("user-agent") or "",
                referrer=view.first("referer") or "",
                instance=self.shared.instance,
            )
            c.record = record
            for name, sink in self.shared.sinks.items():
                sink.write(formats.FORMATS[name][1](record))
            if self.shared.sinks:
                m.log_written(LogStream.ACCESS)
            decision = state.decision
            if decision.linked and self.shared.linked is not None:
                self.shared.linked.write(formats.linked_line(record, decision.member, decision.key_id))
                m.log_written(LogStream.LINKED)
        except Exception as e:  # noqa: BLE001 - a record that cannot be written is counted; the proxy serves on
            m.failure(Stage.ACCESS_LOG)
            logger.error("privproxy: access log record failed (%s)", type(e).__name__)

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for sink in self.shared.all_sinks():
            sink.close()
