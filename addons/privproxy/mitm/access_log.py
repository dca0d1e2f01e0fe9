"""AccessLog: exactly one scrubbed record per answered flow, buffered and flushed every second (C2, C3)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from privproxy import pipeline
from privproxy.access_log import formats
from privproxy.access_log.rotation import Rotation
from privproxy.access_log.sink import Sink
from privproxy.mitm import flowview, internals
from privproxy.mitm.runtime import Runtime

logger = logging.getLogger(__name__)
BUFFER_LIMIT = 256 * 1024  # responses up to this size (with a Content-Length) are not streamed


class ByteCounter:
    """A response stream callable: passes chunks through and counts them for the log's size field."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.n += len(chunk)
        return chunk


class AccessLog:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
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
        policy = self.rt.policy
        settings = policy.logging if policy is not None else None
        d = ctx.options.privproxy_log_dir
        fmt = ctx.options.privproxy_log_format or (settings.format if settings else "json")
        rotation = settings.rotation if settings else None
        want = (d, fmt, rotation, policy.consent.enabled if policy else False,
                policy.consent.linked_retention_days if policy else None)
        if want == self._built:
            return
        self._built = want
        for sink in self.rt.sinks.values():
            sink.close()
        self.rt.sinks = {}
        if self.rt.linked is not None:
            self.rt.linked.close()
            self.rt.linked = None
        if d:
            try:  # at start, so tools reading the directory (dsr, log shippers) find it before the first flush
                Path(d).mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # the sinks meet the same error at their first write, and count it with its reason
            for name in formats.selected(fmt):
                filename, _ = formats.FORMATS[name]
                sink = Sink(Path(d) / filename, "access", self._on_error, rotation=rotation)
                sink.expire()
                self.rt.sinks[name] = sink
            if policy is not None and policy.consent.enabled:
                self.rt.linked = Sink(Path(d) / formats.LINKED_FILE, "linked", self._on_error, locked=True,
                                      rotation=dataclasses.replace(rotation or Rotation(),
                                                                   retention_days=policy.consent.linked_retention_days))
                self.rt.linked.expire()

    def _on_error(self, stream: str, reason: str) -> None:
        self.rt.metrics.log_errors.labels(stream, reason).inc()

    def running(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self.sync()  # a reloaded filters.yaml may change format or rotation
                for sink in self.rt.all_sinks():
                    sink.flush_if_due()
            except Exception as e:  # noqa: BLE001 - the ticker must survive anything, or logs stop being flushed
                self.rt.metrics.failures.labels("access_log").inc()
                logger.error("privproxy: access log maintenance failed (%s)", type(e).__name__)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Large or unsized bodies stream through (and are counted as they pass); small ones are buffered by
        mitmproxy and sent in one write, which is cheaper than streaming them."""
        if flow.response is not None and not flow.response.stream:
            length = flow.response.headers.get("content-length", "")
            if length.isdigit() and int(length) <= BUFFER_LIMIT:
                return
            counter = ByteCounter()
            flow.response.stream = counter
            flow.metadata["privproxy_bytes"] = counter

    def response(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        state = flowview.state_of(flow)
        outcome = "forwarded"
        if state is not None and state.redirect and flow.response.status_code == state.policy.https.redirect_status:
            outcome = "redirected"
        elif state is not None and state.refused:
            outcome = "refused"
        elif flow.error is not None:
            outcome = "upstream_error"
        outcome = flow.metadata.get("privproxy_outcome", outcome)  # e.g. upstream_timeout: the proxy's own 504
        counter = flow.metadata.get("privproxy_bytes")
        size = counter.n if counter is not None else len(flow.response.raw_content or b"")
        self.finish(flow, flow.response.status_code, size, outcome)

    def error(self, flow: http.HTTPFlow) -> None:
        """A flow that ended without its response hook: refused by the HTTP layer (its head, its framing, its
        size), left by its client, or failed at the origin. The record has the status the visitor got."""
        answer = internals.error_answer(flow)
        if answer is None:
            if flow.response is None:  # a cause the guarded layer did not see: as mitmproxy answers, 502
                self.finish(flow, 502, None, flow.metadata.get("privproxy_outcome", "upstream_error"))
            return
        outcome = answer.outcome
        if outcome == "upstream_error":
            outcome = flow.metadata.get("privproxy_outcome", outcome)  # e.g. upstream_timeout on an HTTP/2 origin
        if flowview.state_of(flow) is None:
            self.begin_refused(flow)
        counter = flow.metadata.get("privproxy_bytes")
        self.finish(flow, answer.status, counter.n if counter is not None else None, outcome)

    def begin_refused(self, flow: http.HTTPFlow) -> None:
        """A request refused before privproxy classified it (an unreadable or oversized head): classified now by
        the same pipeline, so its record has the truncated client address, and `-` for what is unknown."""
        policy = self.rt.policy
        if policy is None:
            return
        try:
            view = flowview.view(flow)
            flow.metadata["privproxy"] = pipeline.begin(view, policy, self.rt.locator)
            flow.metadata["privproxy_view"] = view
        except Exception as e:  # noqa: BLE001 - finish() then counts the record as failed: nothing unscrubbed is written
            logger.error("privproxy: classifying a refused request failed (%s)", type(e).__name__)

    def finish(self, flow: http.HTTPFlow, status: int, size: int | None, outcome: str) -> None:
        if flow.metadata.get("privproxy_logged"):
            return
        flow.metadata["privproxy_logged"] = True
        state = flowview.state_of(flow)
        view = flow.metadata.get("privproxy_view")
        if state is None or view is None:
            self.rt.metrics.failures.labels("access_log").inc()
            return
        try:
            ended = flow.response.timestamp_end if flow.response and flow.response.timestamp_end else time.time()
            record = pipeline.log_record(
                state, view, status, size, outcome, ended,
                user_agent=view.first("user-agent") or "",
                referrer=view.first("referer") or "",
                instance=self.rt.instance,
            )
            flow.metadata["privproxy_record"] = record
            for name, sink in self.rt.sinks.items():
                sink.write(formats.FORMATS[name][1](record))
            if self.rt.sinks:
                self.rt.metrics.log_records.labels("access").inc()
            decision = state.decision
            if decision.linked and self.rt.linked is not None:
                self.rt.linked.write(formats.linked_line(record, decision.member, decision.key_id))
                self.rt.metrics.log_records.labels("linked").inc()
        except Exception as e:  # noqa: BLE001 - a record that cannot be written is counted; the proxy serves on
            self.rt.metrics.failures.labels("access_log").inc()
            logger.error("privproxy: access log record failed (%s)", type(e).__name__)

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for sink in self.rt.all_sinks():
            sink.close()
