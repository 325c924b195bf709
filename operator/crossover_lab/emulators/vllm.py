"""A vLLM emulator (a test part, not vLLM): the OpenAI-compatible API and vLLM's metrics, with honest capacity.

Throughput follows the two-dimensional capacity model crossover reasons with: per tick of `dt` seconds of GPU time,
sequences still prefilling take up to `prefill_tps × dt` prompt tokens (first come, first served, chunked), and the
time left decodes `decode_tps × left` output tokens shared among sequences decoding (equal shares, water-filled),
at most `max_batch` sequences running; the rest
wait in a FIFO queue. So an overloaded emulator queues, its time to first token grows, and its aggregate
rates saturate at the configured capacity, as a real engine's do. Until `cold_start_seconds` have passed since
start, `/health` and the completion endpoints answer 503 (a real vLLM is loading weights).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from crossover_lab.emulators.openai_wire import (
    DONE,
    BadRequest,
    Reply,
    error_response,
    models_body,
    parse,
    start_stream,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


@dataclass(frozen=True)
class VLLMEmulatorConfig:
    model: str = "emulated-model"
    prefill_tokens_per_s: float = 20_000.0
    decode_tokens_per_s: float = 2_000.0
    max_batch: int = 256
    cold_start_seconds: float = 0.0
    kv_cache_tokens: int = 1_000_000
    default_max_tokens: int = 256
    tick_seconds: float = 0.02


@dataclass
class Sequence:
    prompt_tokens: int
    max_tokens: int
    arrived: float
    admitted: float | None = None
    prefilled: float = 0.0
    decoded: float = 0.0
    emitted: int = 0
    first_token_at: float | None = None
    updates: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # new tokens; -1 when finished
    cancelled: bool = False

    @property
    def prefilling(self) -> bool:
        return self.prefilled < self.prompt_tokens

    @property
    def finished(self) -> bool:
        return self.emitted >= self.max_tokens


class Metrics:
    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self.prompt = Counter("vllm:prompt_tokens", "Prefill tokens processed", labels, registry=r).labels(model)
        self.generation = Counter("vllm:generation_tokens", "Generation tokens", labels, registry=r).labels(model)
        self.running = Gauge("vllm:num_requests_running", "Requests running", labels, registry=r).labels(model)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting", labels, registry=r).labels(model)
        self.kv = Gauge("vllm:kv_cache_usage_perc", "KV cache usage, 0..1", labels, registry=r).labels(model)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "TTFT", labels, registry=r, buckets=LATENCY_BUCKETS
        ).labels(model)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "End to end latency", labels, registry=r, buckets=LATENCY_BUCKETS
        ).labels(model)
        self.queue = Histogram(
            "vllm:request_queue_time_seconds", "Time waiting", labels, registry=r, buckets=LATENCY_BUCKETS
        ).labels(model)


class Engine:
    """The scheduler: admits, prefills and decodes sequences tick by tick while there is work."""

    def __init__(self, config: VLLMEmulatorConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, sequence: Sequence) -> None:
        """Queue a request and admit it at once if there is room: vLLM's scheduler admits within a step of a few
        milliseconds, so `num_requests_waiting` counts requests the batch or KV cache has no room for. Admitting only
        at the next 20 ms tick showed, in a replay compressed 72 times, a request "waiting" at most scrapes of an
        engine 10 % busy, and the operator learned a tenth of its real capacity from those false queues."""
        self.waiting.append(sequence)
        self._admit(time.monotonic())
        self.metrics.running.set(len(self.running))
        self.metrics.waiting.set(len(self.waiting))
        self._wake.set()

    def _held_tokens(self) -> float:
        return sum(s.prefilled + s.decoded for s in self.running)

    def _admit(self, now: float) -> None:
        while self.waiting and len(self.running) < self.config.max_batch:
            head = self.waiting[0]
            if head.cancelled:
                self.waiting.popleft()
                continue
            needed = head.prompt_tokens + head.max_tokens
            if self.running and self._held_tokens() + needed > self.config.kv_cache_tokens:
                break  # no KV room: wait, as vLLM does
            self.waiting.popleft()
            head.admitted = now
            self.metrics.queue.observe(now - head.arrived)
            self.running.append(head)

    def _step(self, dt: float, now: float) -> float:
        """Run `dt` seconds of GPU time; return the part no running sequence could use (all of them finished)."""
        # one GPU, time-shared: prefill (chunked, first come first served) takes its share of the tick first and
        # decode gets what is left, so a busy replica serves exactly `in/prefill + out/decode = 1`
        prefill_budget = self.config.prefill_tokens_per_s * dt
        prefilled = 0.0
        for sequence in self.running:
            if prefill_budget <= 0:
                break
            if sequence.prefilling:
                take = min(prefill_budget, sequence.prompt_tokens - sequence.prefilled)
                sequence.prefilled += take
                prefill_budget -= take
                prefilled += take
                if not sequence.prefilling:
                    self.metrics.prompt.inc(sequence.prompt_tokens)
        decoding = [s for s in self.running if not s.prefilling and not s.finished]
        decode_time = max(0.0, dt - prefilled / self.config.prefill_tokens_per_s)
        decode_budget = self.config.decode_tokens_per_s * decode_time
        offered = decode_budget
        # water-filling: short remainders finish, the rest share what is left equally
        decoding.sort(key=lambda s: s.max_tokens - s.decoded)
        for index, sequence in enumerate(decoding):
            share = decode_budget / (len(decoding) - index)
            take = min(share, sequence.max_tokens - sequence.decoded)
            sequence.decoded += take
            decode_budget -= take
        for sequence in decoding:
            new = min(sequence.max_tokens, math.floor(sequence.decoded + 1e-9)) - sequence.emitted
            if new > 0:
                if sequence.first_token_at is None:
                    sequence.first_token_at = now
                    self.metrics.ttft.observe(now - sequence.arrived)
                sequence.emitted += new
                self.metrics.generation.inc(new)
                sequence.updates.put_nowait(new)
        for sequence in [s for s in self.running if s.finished or s.cancelled]:
            self.running.remove(sequence)
            if sequence.finished:
                self.metrics.e2e.observe(now - sequence.arrived)
            sequence.updates.put_nowait(-1)
        if decode_budget <= 1e-9:
            return 0.0
        return decode_time * decode_budget / offered if offered > 0 else 0.0

    async def _loop(self) -> None:
        last = time.monotonic()
        while True:
            if not self.running and not self.waiting:
                self.metrics.running.set(0)
                self.metrics.waiting.set(0)
                self.metrics.kv.set(0)
                self._wake.clear()
                await self._wake.wait()
                last = time.monotonic()
            await asyncio.sleep(self.config.tick_seconds)
            now = time.monotonic()
            left = now - last
            # a slot freed mid-tick is refilled within the tick: a long tick (a busy machine) must not waste the GPU
            for _ in range(16):
                self._admit(now)
                if not self.running:
                    break
                left = self._step(left, now)
                if left <= 1e-9 or not self.waiting:
                    break
            last = now
            self._admit(now)
            self.metrics.running.set(len(self.running))
            self.metrics.waiting.set(len(self.waiting))
            self.metrics.kv.set(min(1.0, self._held_tokens() / self.config.kv_cache_tokens))


def build_vllm_app(config: VLLMEmulatorConfig) -> web.Application:
    app = web.Application()
    metrics = Metrics(config.model)
    engine = Engine(config, metrics)
    started = time.monotonic()

    def loading() -> bool:
        return time.monotonic() - started < config.cold_start_seconds

    async def on_startup(_: web.Application) -> None:
        nonlocal started
        started = time.monotonic()
        engine.start()

    async def on_cleanup(_: web.Application) -> None:
        await engine.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)

    async def health(_: web.Request) -> web.Response:
        if loading():
            return web.Response(status=503, text="loading model")
        return web.Response(text="")

    async def models(_: web.Request) -> web.Response:
        return web.json_response(models_body([config.model], "vllm-emulator"))

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def complete(request: web.Request, chat: bool) -> web.StreamResponse:
        if loading():
            return error_response(503, "model is loading", "service_unavailable")
        try:
            completion = await parse(request, chat, config.default_max_tokens)
        except BadRequest as error:
            return error_response(400, str(error), "invalid_request_error")
        if completion.model and completion.model != config.model:
            return error_response(404, f"The model `{completion.model}` does not exist.", "NotFoundError")
        sequence = Sequence(completion.prompt_tokens, completion.max_tokens, time.monotonic())
        reply = Reply(completion, config.model)
        engine.submit(sequence)
        try:
            if not completion.stream:
                while await sequence.updates.get() != -1:
                    pass
                return web.json_response(reply.body(sequence.emitted))
            response = await start_stream(request)
            sent = 0
            while True:
                new = await sequence.updates.get()
                if new == -1:
                    break
                await response.write(reply.chunk(sent, new, finish=sent + new >= completion.max_tokens))
                sent += new
            if completion.include_usage:
                await response.write(reply.usage_chunk(sent))
            await response.write(DONE)
            await response.write_eof()
            return response
        finally:
            sequence.cancelled = True  # a client that went away frees its slot

    async def chat(request: web.Request) -> web.StreamResponse:
        return await complete(request, chat=True)

    async def text(request: web.Request) -> web.StreamResponse:
        return await complete(request, chat=False)

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", scrape)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", text)
    return app
