"""The request path: pick the cheapest place that can serve a request now, forward it, stream it back, count it.

Per request, in order: `APIOnly` goes to the API; the operator's spill fraction sends its share there (a
deterministic credit, not a coin); otherwise the least-loaded ready pod under its in-flight limit serves it. No pod
(cold start, scale from zero) or every pod full (overflow) spills when spilling is allowed; when it is not
(`SelfHostedOnly`, budget spent, API backing off after a 429) the request waits for a slot, boundedly, then gets 429
with Retry-After. Failures before the first byte reaches the client are retried once on another pod, then on the
API; a failure after bytes went out is reported in the stream and never retried (the client would see text twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from costpolicy.pricing import api_bill
from crossover.contracts import PolicyMode
from crossover.router import metrics as m
from crossover.router.state import APITarget, Endpoint, RouterState

log = logging.getLogger(__name__)

USAGE_MARKERS = (b'"usage":{', b'"usage": {')


@dataclass(frozen=True)
class RouterSettings:
    max_inflight_per_pod: int = 64
    queue_timeout_seconds: float = 30.0
    api_key: str | None = None  # from the Secret, through the environment; never logged


class _BeforeFirstByte(Exception):
    """The upstream failed before anything reached the client: safe to try elsewhere."""

    def __init__(self, reason: str, retry_after: float | None = None, throttled: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.throttled = throttled


@dataclass
class _Usage:
    prompt: int | None = None
    completion: int | None = None
    cached: int = 0

    def read(self, payload: dict[str, Any]) -> None:
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.prompt = int(usage.get("prompt_tokens") or 0)
            self.completion = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            self.cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0


def api_cost(api: APITarget, usage: _Usage) -> Decimal:
    return api_bill(api.pricing, usage.prompt or 0, usage.completion or 0, usage.cached)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "crossover_router", "code": status}}
    return web.json_response(body, status=status, headers=headers)


class Router:
    def __init__(self, state: RouterState, settings: RouterSettings, metrics: m.RouterMetrics) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), auto_decompress=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ---- choosing --------------------------------------------------------------------------------------------

    async def _wait_for_pod(self, exclude: set[str]) -> Endpoint | None:
        deadline = time.monotonic() + self.settings.queue_timeout_seconds
        while time.monotonic() < deadline:
            pod = self.state.least_loaded(self.settings.max_inflight_per_pod, exclude)
            if pod is not None:
                return pod
            await asyncio.sleep(0.01)
        return None

    # ---- the handler -----------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        state = self.state
        if not state.ready or state.policy is None:
            return _error(503, "router not ready: routing policy not known yet")
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        client_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
        if stream:  # ask upstream for usage so tokens are counted; stripped again unless the client asked
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        spill_turn = state.take_spill_turn()
        tried: set[str] = set()
        attempts = {"pods": 0, "api": 0}
        failure: _BeforeFirstByte | None = None
        while True:
            target = await self._choose(spill_turn, tried, attempts)
            if target is None:
                if failure is not None and not failure.throttled:
                    self.metrics.count(m.SELF, m.REJECTED, None, None)
                    return _error(502, f"upstream failed: {failure}")
                retry = str(max(1, round(failure.retry_after or 1))) if failure is not None else "1"
                self.metrics.count(m.SELF, m.REJECTED, None, None)
                return _error(429, "no capacity to serve this request now", {"Retry-After": retry})
            try:
                if target == m.API:
                    attempts["api"] += 1
                    api, key = state.api, self.settings.api_key
                    assert api is not None and key is not None
                    return await self._forward_api(request, body, client_usage, arrived, api, key)
                assert isinstance(target, Endpoint)
                attempts["pods"] += 1
                tried.add(target.url)
                return await self._forward_pod(request, body, client_usage, arrived, target)
            except _BeforeFirstByte as error:
                failure = error
                if error.throttled:
                    state.api_backoff_until = time.monotonic() + (error.retry_after or 1.0)
                log.info("upstream failed before the first byte (%s); trying elsewhere", error)

    async def _choose(self, spill_turn: bool, tried: set[str], attempts: dict[str, int]) -> Endpoint | str | None:
        """The next place to try, or None when there is none (the caller answers 429 or 502)."""
        state = self.state
        assert state.policy is not None
        api_ok = state.api_usable(self.settings.api_key) and attempts["api"] == 0
        if state.policy.mode == PolicyMode.API_ONLY:
            usable = state.api is not None and self.settings.api_key is not None and attempts["api"] == 0
            return m.API if usable else None
        if attempts["pods"] >= 2:  # the first pod and one retry failed: the API is the last resort
            return m.API if api_ok else None
        if api_ok and (spill_turn or not state.endpoints):
            return m.API
        pod = state.least_loaded(self.settings.max_inflight_per_pod, tried)
        if pod is not None:
            return pod
        if state.endpoints.keys() - tried:  # every pod is at its limit
            if api_ok:
                return m.API  # overflow: spill instead of queueing
            if time.monotonic() < state.api_backoff_until or attempts["api"]:
                return state.least_loaded(None, tried)  # the API pushes back: queue on the pods instead
            return await self._wait_for_pod(tried)  # SelfHostedOnly or no API: a bounded wait
        if attempts["pods"] or attempts["api"]:  # everything there is failed already
            return m.API if api_ok else None
        return await self._wait_for_pod(tried)  # no pod at all and no spill allowed: wait for one

    # ---- forwarding ------------------------------------------------------------------------------------------

    async def _forward_pod(
        self, request: web.Request, body: dict[str, Any], client_usage: bool, arrived: float, pod: Endpoint
    ) -> web.StreamResponse:
        pod.inflight += 1
        self.metrics.inflight.labels(m.SELF).inc()
        try:
            return await self._forward(
                request, f"{pod.url}{request.path}", body, {}, client_usage, arrived, m.SELF, None
            )
        finally:
            pod.inflight -= 1
            self.metrics.inflight.labels(m.SELF).dec()

    async def _forward_api(
        self, request: web.Request, body: dict[str, Any], client_usage: bool, arrived: float, api: APITarget, key: str
    ) -> web.StreamResponse:
        rewritten = {**body, "model": api.model}
        path = request.path.removeprefix("/v1")
        headers = {"Authorization": f"Bearer {key}"}
        self.metrics.inflight.labels(m.API).inc()
        try:
            return await self._forward(
                request, f"{api.base_url.rstrip('/')}{path}", rewritten, headers, client_usage, arrived, m.API, api
            )
        finally:
            self.metrics.inflight.labels(m.API).dec()

    async def _forward(
        self,
        request: web.Request,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        client_usage: bool,
        arrived: float,
        backend: str,
        api: APITarget | None,
    ) -> web.StreamResponse:
        assert self._session is not None
        payload = json.dumps(body, separators=(",", ":")).encode()
        usage = _Usage()
        overhead = time.perf_counter() - arrived
        try:
            upstream_cm = self._session.post(url, data=payload, headers={"Content-Type": "application/json", **headers})
            upstream = await upstream_cm.__aenter__()
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: {type(error).__name__}") from None
        try:
            received = time.perf_counter()
            if upstream.status == 429 and backend == m.API:
                await upstream.read()
                self.metrics.count(backend, m.THROTTLED, None, None)
                retry = upstream.headers.get("Retry-After")
                raise _BeforeFirstByte("api: 429", retry_after=float(retry) if retry else 1.0, throttled=True)
            if upstream.status >= 500:
                await upstream.read()
                self.metrics.count(backend, m.ERROR, None, None)
                raise _BeforeFirstByte(f"{backend}: HTTP {upstream.status}")
            if upstream.status != 200 or not body.get("stream"):
                data = await upstream.read()
                received = time.perf_counter()  # the router's own time starts again once the body is in
                if upstream.status == 200:
                    with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                        usage.read(json.loads(data))
                response = web.Response(
                    body=data, status=upstream.status, content_type="application/json", charset="utf-8"
                )
                self._account(backend, m.OK if upstream.status == 200 else m.ERROR, usage, api)
                self.metrics.added_latency.observe(overhead + (time.perf_counter() - received))
                return response
            return await self._stream(request, upstream, client_usage, usage, backend, api, overhead, received)
        finally:
            await upstream_cm.__aexit__(None, None, None)

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        client_usage: bool,
        usage: _Usage,
        backend: str,
        api: APITarget | None,
        overhead: float,
        received: float,
    ) -> web.StreamResponse:
        lines = upstream.content.__aiter__()
        try:
            first = await lines.__anext__()
            received = time.perf_counter()  # upstream's time to first token is not the router's
        except StopAsyncIteration:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: empty stream") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: {type(error).__name__}") from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        skip_blank = False
        outcome = m.OK
        line: bytes | None = first
        try:
            while line is not None:
                if skip_blank and line.strip() == b"":
                    skip_blank = False
                elif line.startswith(b"data:") and any(marker in line for marker in USAGE_MARKERS):
                    chunk = json.loads(line[5:])
                    usage.read(chunk)
                    if client_usage or chunk.get("choices"):
                        await response.write(line)
                    else:
                        skip_blank = True  # drop the usage-only event the client did not ask for
                else:
                    await response.write(line)
                if line is first:
                    self.metrics.added_latency.observe(overhead + (time.perf_counter() - received))
                try:
                    line = await lines.__anext__()
                except StopAsyncIteration:
                    line = None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError) as error:
            outcome = m.ERROR  # bytes already went out: report, never retry (the client would see text twice)
            message = {"error": {"message": f"upstream failed mid-stream ({type(error).__name__})", "code": 502}}
            try:
                await response.write(b"data: " + json.dumps(message).encode() + b"\n\n")
            except (ConnectionResetError, RuntimeError):
                outcome = m.CLIENT_CLOSED
        except (ConnectionResetError, asyncio.CancelledError):
            self._account(backend, m.CLIENT_CLOSED, usage, api)
            raise
        self._account(backend, outcome, usage, api)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    def _account(self, backend: str, outcome: str, usage: _Usage, api: APITarget | None) -> None:
        self.metrics.count(backend, outcome, usage.prompt, usage.completion)
        if api is not None and usage.prompt is not None:
            self.metrics.spend(api_cost(api, usage))
