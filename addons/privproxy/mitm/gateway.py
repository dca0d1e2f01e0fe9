"""VendorGateway: beacons of the vendors in `beacons.forward` go straight to the vendor's collector, and the paths
in `beacons.scripts` serve the vendors' tracker scripts (privproxy.gateway, privproxy.script_cache).

Both answer the flow before mitmproxy would open a connection to the site's upstream, so the origin never sees
such a request: the vendor's answer (or privproxy's own 502/504 when the vendor fails) then travels the usual
response hooks (Set-Cookie rules, HSTS, the access-log record, metrics). Every hook fails closed: a beacon meant for
a vendor is answered 502 whatever goes wrong, never passed on to the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine

from mitmproxy import ctx, http

from privproxy import gateway, script_cache, vendor_consent
from privproxy.beacons import Script
from privproxy.gateway import VendorClient, VendorError, VendorRequest
from privproxy.metrics import DEFAULT_UPSTREAM_TIMEOUT
from privproxy.mitm import flowview
from privproxy.mitm.shared import SharedState
from privproxy.outcome import Outcome, Stage
from privproxy.pipeline import FlowState

logger = logging.getLogger(__name__)

_STATUS = {502: "502 Bad Gateway", 504: "504 Gateway Timeout"}


def _page(status: int) -> bytes:
    return f"<!doctype html><title>{_STATUS[status]}</title><h1>{_STATUS[status]}</h1>\n".encode()


class VendorGateway:
    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.timeout = DEFAULT_UPSTREAM_TIMEOUT
        self._clients: dict[tuple[bytes, float], VendorClient] = {}
        self.cache = script_cache.ScriptCache()
        self._fetches: dict[str, asyncio.Task[script_cache.Entry]] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # pools replaced by a reload, closed after a grace period

    def configure(self, updated: set[str]) -> None:
        if "privproxy_upstream_timeout" in updated and "privproxy_upstream_timeout" in ctx.options:
            self.timeout = float(ctx.options.privproxy_upstream_timeout)

    def client(self, extra_ca: bytes) -> VendorClient:
        """The pool for this CA file's content and timeout (a reload that changes either gets a new pool; the old
        ones are closed once the requests they carry have had their time)."""
        key = (extra_ca, self.timeout)
        c = self._clients.get(key)
        if c is None:
            grace = 2 * (self.timeout if self.timeout > 0 else DEFAULT_UPSTREAM_TIMEOUT)
            for old_key in list(self._clients):
                old = self._clients.pop(old_key)
                task = asyncio.get_running_loop().create_task(self._retire(old, grace))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            c = self._clients[key] = VendorClient(extra_ca, self.timeout)
        return c

    @staticmethod
    async def _retire(old: VendorClient, grace: float) -> None:
        await asyncio.sleep(grace)
        await old.aclose()

    # --- Tracker scripts ------------------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        state = flowview.state_of(flow)
        if state is None or flowview.answered(flow):
            return None
        if state.script is not None:
            return self._serve_script(flow, state, state.script)
        method = flowview.method(flow)
        if gateway.serves_gpc_json(state, method):
            body = b"" if method == "HEAD" else vendor_consent.gpc_json()
            flowview.answer_as_received(flow, Outcome.FORWARDED, 200, [
                ("Content-Type", "application/json"), ("Cache-Control", "public, max-age=86400"),
                ("Access-Control-Allow-Origin", "*")], body)
        return None

    async def _serve_script(self, flow: http.HTTPFlow, state: FlowState, script: Script) -> None:
        try:
            now = time.monotonic()
            entry = self.cache.fresh(script.url, now)
            result, status = "hit", 502
            if entry is None:
                try:
                    entry, result = await self._fetch(script, state.policy.beacons.forward_ca), "miss"
                except VendorError as e:
                    entry, status = self.cache.stale(script.url, time.monotonic()), e.status
                    result = "stale" if entry is not None else "failed"
                    logger.warning("privproxy: tracker script %s could not be fetched (%s); %s", script.path, e.reason,
                                   "serving the cached copy" if entry is not None else f"answering {status}")
            self.shared.metrics.script_served(script.path, result)
            if entry is None:
                self._own(flow, status)
                return
            age = entry.remaining(time.monotonic())
            fields = [("Content-Type", entry.content_type), ("X-Content-Type-Options", "nosniff"),
                      ("Cache-Control", f"public, max-age={age}" if age else "no-cache")]
            body = b"" if flowview.method(flow) == "HEAD" else entry.body
            flowview.answer_as_received(flow, Outcome.FORWARDED, 200, fields, body)
        except Exception as e:  # noqa: BLE001 - fail closed: privproxy's 502, never the upstream
            self._failed(flow, e)

    async def _fetch(self, script: Script, extra_ca: bytes) -> script_cache.Entry:
        """One fetch per script at a time: concurrent misses wait for the same one."""
        task = self._fetches.get(script.url)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._download(script, extra_ca))
            if not task.done():  # mitmproxy's eager tasks can end before create_task returns
                self._fetches[script.url] = task
                task.add_done_callback(lambda _t, url=script.url: self._fetches.pop(url, None))
        return await asyncio.shield(task)

    async def _download(self, script: Script, extra_ca: bytes) -> script_cache.Entry:
        ans = await self.client(extra_ca).get(script.url, script_cache.REQUEST_HEADERS, script_cache.MAX_SCRIPT)
        if ans.status != 200:
            raise VendorError("protocol")
        get = {k.lower(): v for k, v in ans.headers}
        if get.get("content-encoding", "identity").lower() not in ("", "identity"):
            raise VendorError("protocol")  # asked for identity: an encoded answer would be served mislabelled
        entry = script_cache.Entry(ans.body, script_cache.content_type(get.get("content-type", ""), script.url),
                                   time.monotonic(), script_cache.ttl(get.get("cache-control", "")))
        self.cache.store(script.url, entry)
        return entry

    # --- Beacons --------------------------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        state = flowview.state_of(flow)
        if state is None or state.forward is None or flowview.answered(flow):
            return None
        try:
            c = flowview.context(flow)
            query = (state.target.query or "") if state.target is not None else ""
            signal = gateway.refused(state.forward, c.view.get_all, state.policy.consent, query) if c.view else None
            if signal is not None:  # the visitor's own signal refuses this vendor's purposes: nothing is sent
                self.shared.metrics.vendor_opted_out(state.forward.vendor, signal)
                flowview.answer_here(flow, Outcome.NOT_FORWARDED, 204, b"", {"cache-control": "no-store"})
                return None
            method, target, fields, body = flowview.outgoing(flow)
            client = state.client.truncated if state.client is not None else ""
            req = gateway.vendor_request(state.forward, method, target, fields, body, client,
                                         state.policy.beacons.limits)
        except Exception as e:  # noqa: BLE001 - fail closed: privproxy's 502, never the upstream
            self._failed(flow, e)
            return None
        return self._send(flow, state, req)

    async def _send(self, flow: http.HTTPFlow, state: FlowState, req: VendorRequest) -> None:
        m = self.shared.metrics
        try:
            try:
                ans = await self.client(state.policy.beacons.forward_ca).send(req)
            except VendorError as e:
                m.vendor_failed(req.vendor, e.reason)
                logger.warning("privproxy: vendor %s did not answer a beacon (%s); answering %d", req.vendor, e.reason,
                               e.status)
                self._own(flow, e.status)
                return
            m.vendor_answered(req.vendor, ans.status, ans.seconds)
            flowview.answer_as_received(flow, Outcome.FORWARDED, ans.status, gateway.answer_fields(ans.headers),
                                        ans.body)
        except Exception as e:  # noqa: BLE001 - fail closed: privproxy's 502, never the upstream
            self._failed(flow, e)

    # --- Answers --------------------------------------------------------------------------------------------------

    @staticmethod
    def _own(flow: http.HTTPFlow, status: int) -> None:
        outcome = Outcome.UPSTREAM_TIMEOUT if status == 504 else Outcome.UPSTREAM_ERROR
        flowview.answer_here(flow, outcome, status, _page(status),
                             {"content-type": "text/html; charset=utf-8", "cache-control": "no-store"})

    def _failed(self, flow: http.HTTPFlow, e: Exception) -> None:
        self.shared.metrics.failure(Stage.BEACON)
        logger.error("privproxy: analytics gateway failed (%s); answered 502", type(e).__name__)
        self._own(flow, 502)

    async def done(self) -> None:
        retiring = list(self._retiring)
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
