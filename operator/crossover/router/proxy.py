"""The request path: pick the cheapest place that can serve a request now, forward it, stream it back, count it.

Per request, in order: `APIOnly` goes to the API; the operator's spill fraction sends its share there (a
deterministic credit, not a coin); otherwise the least-loaded ready pod under its in-flight limit serves it. No pod
(cold start, scale from zero) spills if `policy.spill.onColdStart`, every pod full (overflow) if
`policy.spill.onSaturation`, and all spill together stays under `policy.spill.maxFraction` of the last minute's
requests. When spilling is not allowed (those fields, `SelfHostedOnly`, budget spent, API backing off after a 429)
the request waits for a slot, boundedly (queue length and wait), then gets 429 with Retry-After. Failures before the
first byte reaches the client are retried once on another pod, then on the API; a failure after bytes went out is
reported in the stream and never retried (the client would see text twice). A client that goes away cancels its
upstream request and is never retried.

Streams pass through as bytes, cut only at event boundaries: the router parses an event only when it carries a
usage object (to count tokens, and to drop the usage event the client did not ask for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from costpolicy.pricing import api_bill
from crossover.contracts import PolicyMode
from crossover.router import metrics as m
from crossover.router import wire
from crossover.router.state import APITarget, Endpoint, QueueFull, RouterState

log = logging.getLogger(__name__)

MiB = 1024 * 1024
USAGE_KEY = b'"usage"'
USAGE_MARKERS = (b'"usage":{', b'"usage": {')
# The text a stream carries, for the output estimate when it ends without usage (contents, text, tool arguments).
TEXT_FIELDS = re.compile(rb'"(?:content|text|arguments|reasoning_content|refusal)":\s?"((?:[^"\\]|\\.)*)"')
INCLUDE_USAGE = b',"stream_options":{"include_usage":true}}'
LARGE_BODY = 1024 * 1024  # bodies above this go upstream in pieces (no second copy in the transport's buffer)


def default_max_body_bytes(cgroup: Path = Path("/sys/fs/cgroup/memory.max")) -> int:
    """A body cap sized to the pod: 1/32 of its memory limit (bodies are held about twice while in flight, so
    sixteen concurrent bodies at the cap fit), between 1 and 32 MiB; 8 MiB when there is no limit to read."""
    try:
        text = cgroup.read_text().strip()
        limit = int(text) if text != "max" else 0
    except (OSError, ValueError):
        limit = 0
    if limit <= 0:
        return 8 * MiB
    return min(max(limit // 32, 1 * MiB), 32 * MiB)


@dataclass(frozen=True)
class RouterSettings:
    max_inflight_per_pod: int = 64
    queue_timeout_seconds: float = 30.0  # longest wait for a pod slot
    max_queue: int = 1024  # requests waiting for a slot at once; more get 429 at once
    api_key: str | None = None  # from the Secret, through the environment; never logged
    max_body_bytes: int = field(default_factory=default_max_body_bytes)
    body_read_timeout_seconds: float = 30.0  # the whole request body must arrive within this
    connect_timeout_seconds: float = 5.0
    first_byte_timeout_seconds: float = 300.0  # upstream response headers, and a stream's first event
    idle_timeout_seconds: float = 60.0  # longest silence between two pieces of a stream
    backoff_ceiling_seconds: float = 300.0  # longest API back-off, whatever Retry-After says
    max_event_bytes: int = 16 * MiB  # one SSE event (logprobs, tool arguments) may be this large


class _BeforeFirstByte(Exception):
    """The upstream failed before anything reached the client: safe to try elsewhere."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        throttled: bool = False,
        timeout: bool = False,
        response: web.Response | None = None,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.throttled = throttled
        self.timeout = timeout
        self.response = response  # the upstream's own error, sanitised, to pass on if nothing else serves


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    """Writing to the client failed: it went away."""


@dataclass
class _Request:
    """What the handler learnt from the client's request; the body stays bytes (parsed once, not kept)."""

    raw: bytes | bytearray
    path: str
    stream: bool
    client_usage: bool
    max_tokens: int
    arrived: float
    usage: wire.Usage = field(default_factory=wire.Usage)
    streamed_text: int = 0  # bytes of generated text streamed to the client
    accounted: bool = False

    def bill(self, *, whole_output: bool = False) -> None:
        """No valid usage from upstream: the documented estimate. Prompt tokens from the request's bytes (an
        over-estimate: the JSON around the text counts too); output from the text streamed, or, for an abandoned
        non-streaming request, the most the provider may bill (`max_tokens`)."""
        if not self.usage.counted:
            self.usage.prompt = wire.estimate_tokens(len(self.raw))
            self.usage.completion = self.max_tokens if whole_output else wire.estimate_tokens(self.streamed_text)


def api_cost(api: APITarget, usage: wire.Usage) -> Decimal:
    return api_bill(api.pricing, usage.prompt, usage.completion, usage.cached)


def _event_end(data: bytes) -> int:
    """Index just past the last complete SSE event in `data` (0: none yet)."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _payload_of(event: bytes) -> bytes:
    return b"\n".join(
        line[5:].removeprefix(b" ") for line in event.replace(b"\r\n", b"\n").split(b"\n") if line.startswith(b"data:")
    )


class Router:
    def __init__(self, state: RouterState, settings: RouterSettings, metrics: m.RouterMetrics) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._inflight = {backend: metrics.inflight.labels(backend) for backend in (m.SELF, m.API)}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # connect is bounded here; first byte and idle per request (a non-streaming answer's first byte
            # comes only when the whole completion is done, so one socket read timeout cannot fit both)
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout_seconds),
            auto_decompress=True,  # we ask for identity; a provider that compresses anyway is decoded, not relayed
            skip_auto_headers=("User-Agent",),
            json_serialize=lambda value: orjson.dumps(value).decode(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def local_error(
        self,
        status: int,
        message: str,
        code: str | None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """An error the router answers itself: OpenAI's shape, counted."""
        self.metrics.local_errors.labels(str(status), code or "").inc()
        return wire.error_response(status, message, code, param, headers)

    # ---- the handler -----------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        state, settings = self.state, self.settings
        if state.policy is None:  # draining still serves: clients keep arriving until endpoints propagate
            return self.local_error(
                503, "router not ready: routing policy not known yet", "not_ready", headers={"Retry-After": "1"}
            )
        cap = settings.max_body_bytes
        length = request.content_length
        if length is not None and length > cap:
            return self._too_large(length)
        raw: bytes | bytearray
        try:
            async with asyncio.timeout(settings.body_read_timeout_seconds):
                raw = await _read_body(request, length, cap)
        except TimeoutError:
            return self.local_error(
                408, f"request body not received within {settings.body_read_timeout_seconds:g} s", "body_timeout"
            )
        except _TooLarge:
            return self._too_large(None)
        try:
            body = orjson.loads(raw)  # nesting deeper than orjson's limit is a decode error, not a crash
        except orjson.JSONDecodeError:
            return self.local_error(400, "We could not parse the JSON body of your request.", "invalid_json")
        if not isinstance(body, dict):
            return self.local_error(400, "The request body must be a JSON object.", "invalid_json")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.local_error(400, "You must provide a model parameter.", "missing_model", "model")
        if state.served_model and model != state.served_model:
            return self.local_error(404, f"The model `{model}` does not exist.", "model_not_found", "model")
        stream = body.get("stream") is True
        options = body.get("stream_options")
        client_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        max_tokens = limit if isinstance(limit, int) and limit > 0 else 0
        if stream and not client_usage:  # ask upstream for usage so tokens are counted; the event is dropped again
            if options is None:
                raw = bytes(raw[: raw.rindex(b"}")]) + INCLUDE_USAGE  # no re-encoding of a large body
            else:
                body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                raw = orjson.dumps(body)
        del body  # the bytes are what goes upstream; the parsed copy would double the memory a body holds
        job = _Request(raw, request.path, stream, client_usage, max_tokens, arrived)
        return await self._serve(request, job)

    def _too_large(self, length: int | None) -> web.Response:
        size = f"{length} bytes" if length is not None else "larger than the limit"
        return self.local_error(
            413,
            f"Request body is {size}; this router accepts at most {self.settings.max_body_bytes} bytes.",
            "request_too_large",
        )

    async def _serve(self, request: web.Request, job: _Request) -> web.StreamResponse:
        state = self.state
        spill_turn = state.take_spill_turn()
        state.share.routed(time.monotonic())
        tried: set[str] = set()
        attempts = {"pods": 0, "api": 0}
        failure: _BeforeFirstByte | None = None
        while True:
            try:
                target = await self._choose(spill_turn, tried, attempts)
            except QueueFull:
                return self._no_capacity(f"{self.settings.max_queue} requests already wait for a pod", "queue_full")
            if target is None:
                return self._give_up(failure)
            try:
                if target == m.API:
                    attempts["api"] += 1
                    state.share.to_api(time.monotonic())
                    api, key = state.api, self.settings.api_key
                    assert api is not None and key is not None
                    return await self._forward_api(request, job, api, key)
                assert isinstance(target, Endpoint)
                attempts["pods"] += 1
                tried.add(target.identity)
                return await self._forward_pod(request, job, target)
            except _BeforeFirstByte as error:
                failure = error
                if error.throttled:
                    state.api_backoff_until = time.monotonic() + (error.retry_after or 1.0)
                log.info("upstream failed before the first byte (%s); trying elsewhere", error)

    def _give_up(self, failure: _BeforeFirstByte | None) -> web.Response:
        if failure is None:
            return self._no_capacity("no capacity to serve this request now", "no_capacity")
        self.metrics.count(m.SELF, m.REJECTED, None, None)
        if failure.response is not None:  # the upstream's own answer, sanitised, says most
            return failure.response
        if failure.timeout:
            return self.local_error(504, f"upstream timed out: {failure}", "upstream_timeout")
        return self.local_error(502, f"upstream failed: {failure}", "upstream_error")

    def _no_capacity(self, message: str, code: str) -> web.Response:
        self.metrics.count(m.SELF, m.REJECTED, None, None)
        backoff = self.state.api_backoff_until - time.monotonic()
        retry = str(max(1, int(backoff + 0.999))) if backoff > 0 else "1"
        return self.local_error(429, message, code, headers={"Retry-After": retry})

    async def _choose(self, spill_turn: bool, tried: set[str], attempts: dict[str, int]) -> Endpoint | str | None:
        """The next place to try, or None when there is none (the caller answers 429, 502 or 504)."""
        state, settings = self.state, self.settings
        assert state.policy is not None
        api_ok = state.api_usable(settings.api_key) and attempts["api"] == 0
        if state.policy.mode == PolicyMode.API_ONLY:
            usable = state.api is not None and settings.api_key is not None and attempts["api"] == 0
            return m.API if usable and time.monotonic() >= state.api_backoff_until else None
        if attempts["pods"] >= 2:  # the first pod and one retry failed: the API is the last resort
            return m.API if api_ok else None
        policy = state.policy
        if api_ok and (spill_turn or (not state.endpoints and policy.spill_on_cold_start)):
            return m.API
        limit = settings.max_inflight_per_pod
        pod = state.least_loaded(limit, tried)
        if pod is not None:
            return pod
        if state.endpoints.keys() - tried:  # every pod is at its limit
            if api_ok and policy.spill_on_saturation:
                return m.API  # overflow: spill instead of queueing
            if time.monotonic() < state.api_backoff_until or attempts["api"]:
                return state.least_loaded(None, tried)  # the API pushes back: queue on the pods instead
            return await state.wait_for_slot(limit, tried, settings.queue_timeout_seconds, settings.max_queue)
        if attempts["pods"] or attempts["api"]:  # everything there is failed already
            return m.API if api_ok else None
        # no pod at all and no spill allowed: wait for one
        return await state.wait_for_slot(limit, tried, settings.queue_timeout_seconds, settings.max_queue)

    # ---- forwarding ------------------------------------------------------------------------------------------

    async def _forward_pod(self, request: web.Request, job: _Request, pod: Endpoint) -> web.StreamResponse:
        self.state.acquire(pod)
        self._inflight[m.SELF].inc()
        try:
            return await self._forward(request, job, f"{pod.url}{job.path}", job.raw, {}, m.SELF, None, None)
        finally:
            self.state.release(pod)
            self._inflight[m.SELF].dec()

    async def _forward_api(self, request: web.Request, job: _Request, api: APITarget, key: str) -> web.StreamResponse:
        body = orjson.loads(job.raw)  # parsed again only here, to rewrite the model; the pod path never pays
        body["model"] = api.model
        payload = orjson.dumps(body)
        del body
        url = f"{api.base_url.rstrip('/')}{job.path.removeprefix('/v1')}"
        self._inflight[m.API].inc()
        try:
            return await self._forward(request, job, url, payload, {"Authorization": f"Bearer {key}"}, m.API, api, key)
        finally:
            self._inflight[m.API].dec()

    async def _forward(
        self,
        request: web.Request,
        job: _Request,
        url: str,
        payload: bytes | bytearray,
        headers: dict[str, str],
        backend: str,
        api: APITarget | None,
        secret: str | None,
    ) -> web.StreamResponse:
        overhead = time.perf_counter() - job.arrived
        try:
            return await self._exchange(request, job, url, payload, headers, backend, api, secret, overhead)
        except asyncio.CancelledError:  # the client went away (aiohttp cancels its handler): bill what it cost
            if not job.accounted:
                job.bill(whole_output=not job.stream)
                self._account(backend, m.CLIENT_CLOSED, job, api)
            raise

    async def _exchange(
        self,
        request: web.Request,
        job: _Request,
        url: str,
        payload: bytes | bytearray,
        headers: dict[str, str],
        backend: str,
        api: APITarget | None,
        secret: str | None,
        overhead: float,
    ) -> web.StreamResponse:
        assert self._session is not None
        settings = self.settings
        try:
            async with asyncio.timeout(settings.first_byte_timeout_seconds):
                sent: Any = payload
                if len(payload) > LARGE_BODY:  # in pieces, so the transport never copies the whole body again
                    sent = _pieces(payload)
                    headers = {**headers, "Content-Length": str(len(payload))}
                upstream = await self._session.post(
                    url,
                    data=sent,
                    headers={"Content-Type": wire.JSON, "Accept-Encoding": "identity", **headers},
                )
        except TimeoutError:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(
                f"{backend}: no response in {settings.first_byte_timeout_seconds:g} s", timeout=True
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: {type(error).__name__}") from None
        done = False
        try:
            response: web.StreamResponse
            if upstream.status != 200:
                response = await self._upstream_error(upstream, backend, secret)
            elif not job.stream:
                response = await self._whole(upstream, job, backend, api, overhead)
            else:
                response = await self._stream(request, upstream, job, backend, api, overhead, secret)
            done = True
            return response
        finally:
            if done:
                upstream.release()
            else:
                upstream.close()  # unread or cancelled: close, so the engine sees the client go and stops

    async def _upstream_error(self, upstream: aiohttp.ClientResponse, backend: str, secret: str | None) -> web.Response:
        """A non-200 answer: its body in OpenAI's shape, key redacted, request id and rate-limit headers kept.
        A 5xx (or the API's 429) is raised to be tried elsewhere; a 4xx is the client's to see."""
        status = upstream.status
        try:
            async with asyncio.timeout(self.settings.idle_timeout_seconds):
                data = await upstream.content.read(wire.MAX_ERROR_BODY)
        except (TimeoutError, aiohttp.ClientError, OSError):
            data = b""
        headers = wire.passed_headers(upstream.headers, secret)
        response = web.Response(
            status=status, body=wire.provider_error(status, data, secret), content_type=wire.JSON, headers=headers
        )
        if status == 429 and backend == m.API:
            self.metrics.count(backend, m.THROTTLED, None, None)
            retry = wire.retry_after_seconds(upstream.headers.get("Retry-After"), self.settings.backoff_ceiling_seconds)
            response.headers["Retry-After"] = str(int(retry + 0.999))
            raise _BeforeFirstByte("api: HTTP 429", retry_after=retry, throttled=True, response=response)
        self.metrics.count(backend, m.ERROR, None, None)
        if status >= 500:
            raise _BeforeFirstByte(f"{backend}: HTTP {status}", response=response)
        return response

    async def _whole(
        self, upstream: aiohttp.ClientResponse, job: _Request, backend: str, api: APITarget | None, overhead: float
    ) -> web.Response:
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout_seconds):
                data = await upstream.read()
        except TimeoutError:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: body not complete in time", timeout=True) from None
        except (aiohttp.ClientError, OSError) as error:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: {type(error).__name__}") from None
        received = time.perf_counter()
        with contextlib.suppress(orjson.JSONDecodeError):
            job.usage.read(orjson.loads(data))
        if not job.usage.counted:
            job.streamed_text = sum(len(text) for text in TEXT_FIELDS.findall(data))
            job.bill()
        headers = wire.passed_headers(upstream.headers, None)
        response = web.Response(body=data, status=200, content_type=wire.JSON, headers=headers)
        self._account(backend, m.OK, job, api)
        self.metrics.added_latency.observe(overhead + (time.perf_counter() - received))
        return response

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        job: _Request,
        backend: str,
        api: APITarget | None,
        overhead: float,
        secret: str | None,
    ) -> web.StreamResponse:
        settings = self.settings
        content = upstream.content
        try:
            async with asyncio.timeout(settings.first_byte_timeout_seconds):
                chunk = await content.readany()
        except TimeoutError:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: no first event in time", timeout=True) from None
        except (aiohttp.ClientError, OSError) as error:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: {type(error).__name__}") from None
        if not chunk:
            self.metrics.count(backend, m.ERROR, None, None)
            raise _BeforeFirstByte(f"{backend}: empty stream")
        received = time.perf_counter()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **wire.passed_headers(upstream.headers, secret),
            }
        )
        await response.prepare(request)
        outcome, failure = m.OK, None
        final = b""
        pending = bytearray()  # the start of an event whose end has not arrived
        first = True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as idle:
                while chunk:
                    block = b""
                    if not pending:
                        end = _event_end(chunk)
                        if end == len(chunk):
                            block = chunk
                        elif end:
                            block, pending = chunk[:end], bytearray(chunk[end:])
                        else:
                            pending = bytearray(chunk)
                    else:  # look for the boundary only in what is new (and the 3 bytes before it)
                        head = bytes(pending[-3:])
                        end = _event_end(head + chunk)
                        if end:
                            pending += chunk[: end - len(head)]
                            block, pending = bytes(pending), bytearray(chunk[end - len(head) :])
                        else:
                            pending += chunk
                    if len(pending) > settings.max_event_bytes:
                        failure = (f"upstream event over {settings.max_event_bytes} bytes", "event_too_large")
                        break
                    if block:
                        if not pending and content.at_eof():
                            final = block  # the last piece: sent with the stream's end, one write instead of two
                            break
                        await self._send(response, self._pass(block, job))
                        if first:
                            first = False
                            self.metrics.added_latency.observe(overhead + (time.perf_counter() - received))
                    idle.reschedule(loop.time() + settings.idle_timeout_seconds)
                    chunk = await content.readany()
                if pending and failure is None:  # a last event without its blank line
                    final = bytes(pending)
                final = self._pass(final, job)
                if failure is None:
                    try:
                        await response.write_eof(final)
                    except ConnectionResetError:
                        raise _ClientGone from None
                    if first:
                        self.metrics.added_latency.observe(overhead + (time.perf_counter() - received))
                    job.bill()
                    self._account(backend, outcome, job, api)
                    return response
                if final:
                    await self._send(response, final)
        except _ClientGone:
            job.bill()
            self._account(backend, m.CLIENT_CLOSED, job, api)
            return response
        except TimeoutError:
            failure = (f"upstream sent nothing for {settings.idle_timeout_seconds:g} s", "upstream_timeout")
        except (aiohttp.ClientError, OSError) as error:
            failure = (f"upstream failed mid-stream ({type(error).__name__})", "upstream_error")
        if failure is not None:
            outcome = m.ERROR  # bytes already went out: report, never retry (the client would see text twice)
            try:
                await response.write(wire.error_event(*failure))
            except ConnectionResetError:
                outcome = m.CLIENT_CLOSED
        job.bill()
        self._account(backend, outcome, job, api)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    def _pass(self, block: bytes, job: _Request) -> bytes:
        """Complete events as they came; only events with a usage object are parsed (and a usage-only event the
        client did not ask for dropped); the text is measured while no usage was seen, for the estimate."""
        if USAGE_KEY in block and (USAGE_MARKERS[0] in block or USAGE_MARKERS[1] in block):
            block = self._usage_events(block, job)  # only a block with a usage object is split (not "usage":null)
        if not job.usage.counted:
            job.streamed_text += sum(len(text) for text in TEXT_FIELDS.findall(block))
        return block

    @staticmethod
    async def _send(response: web.StreamResponse, block: bytes) -> None:
        if block:
            try:
                await response.write(block)
            except ConnectionResetError:
                raise _ClientGone from None

    def _usage_events(self, block: bytes, job: _Request) -> bytes:
        """Read usage from the events that carry it; drop a usage-only event the client did not ask for."""
        events = block.split(b"\n\n") if b"\r\n" not in block else block.replace(b"\r\n", b"\n").split(b"\n\n")
        kept = []
        for event in events:
            if any(marker in event for marker in USAGE_MARKERS):
                try:
                    chunk = orjson.loads(_payload_of(event))
                except orjson.JSONDecodeError:
                    chunk = None
                if isinstance(chunk, dict):
                    job.usage.read(chunk)
                    if not job.client_usage and not chunk.get("choices"):
                        continue
            kept.append(event)
        return b"\n\n".join(kept)

    def _account(self, backend: str, outcome: str, job: _Request, api: APITarget | None) -> None:
        job.accounted = True
        usage = job.usage
        self.metrics.count(backend, outcome, usage.prompt, usage.completion)
        if api is not None:
            self.metrics.spend(api_cost(api, usage))
            self.metrics.cached_input(usage.cached)


async def _pieces(payload: bytes | bytearray, size: int = 256 * 1024) -> AsyncIterator[memoryview]:
    view = memoryview(payload)
    for start in range(0, len(view), size):
        yield view[start : start + size]


async def _read_body(request: web.Request, length: int | None, cap: int) -> bytearray:
    """The body, held once: into a buffer of the announced size, or grown up to the cap (chunked uploads)."""
    content = request.content
    if length is not None:
        buffer = bytearray(length)
        view = memoryview(buffer)
        filled = 0
        while filled < length:
            chunk = await content.readany()
            if not chunk:
                break
            if filled + len(chunk) > length:
                raise _TooLarge
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        view.release()
        del buffer[filled:]
        return buffer
    grown = bytearray()
    while True:
        chunk = await content.readany()
        if not chunk:
            return grown
        grown += chunk
        if len(grown) > cap:
            raise _TooLarge
