"""A hosted-API emulator (a test part standing in for any OpenAI-compatible provider), with faults on demand.

It checks the bearer key (never logging or echoing it), answers with honest `usage` (in streams too, when asked),
reports prompt-cache hits the way OpenAI's automatic prompt caching does (`openai_wire.PromptCache`), and injects
the failures a provider shows: 429 with Retry-After above a tokens- or requests-per-minute limit
(sliding 60 s window, like the providers' own), a share or a count of 5xx, and a slow first byte. Faults can be
read and changed at runtime on `/_emulator/faults`, so tests and the demo can turn them on and off.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from crossover_lab.emulators.openai_wire import (
    DONE,
    BadRequest,
    PromptCache,
    Reply,
    error_response,
    models_body,
    parse,
    start_stream,
)

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Faults:
    tokens_per_minute: int | None = None  # 429 above this many tokens (in + max out) in the last 60 s
    requests_per_minute: int | None = None
    error_rate: float = 0.0  # share of requests answered 500
    fail_next: int = 0  # the next N requests are answered 503
    first_byte_delay_seconds: float = 0.0


@dataclass(frozen=True)
class HostedAPIConfig:
    api_key: str
    models: tuple[str, ...] = ()  # empty: any model name is accepted and echoed
    output_tokens_per_s: float = 2_000.0  # per request: a provider's decode speed
    faults: Faults = Faults()
    seed: int | None = None


class _Window:
    """Tokens and requests admitted in the last minute."""

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()

    def trim(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - WINDOW_SECONDS:
            self.events.popleft()

    def tokens(self) -> int:
        return sum(n for _, n in self.events)

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.events[0][0] + WINDOW_SECONDS - now)) if self.events else 1


def build_hosted_api_app(config: HostedAPIConfig) -> web.Application:
    app = web.Application()
    state: dict[str, Any] = {"faults": config.faults}
    window = _Window()
    cache = PromptCache()
    rng = random.Random(config.seed)
    registry = CollectorRegistry()
    requests_total = Counter("emulator_api_requests", "Requests by HTTP status", ["status"], registry=registry)
    tokens_total = Counter("emulator_api_tokens", "Tokens billed by direction", ["direction"], registry=registry)
    expected = f"Bearer {config.api_key}".encode()

    def authorised(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def refuse(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
        requests_total.labels(str(status)).inc()
        return error_response(status, message, kind, headers)

    async def complete(request: web.Request, chat: bool) -> web.StreamResponse:
        if not authorised(request):
            return refuse(401, "Incorrect API key provided.", "invalid_api_key")
        try:
            completion = await parse(request, chat, 256)
        except BadRequest as error:
            return refuse(400, str(error), "invalid_request_error")
        if config.models and completion.model not in config.models:
            return refuse(404, f"The model `{completion.model}` does not exist.", "model_not_found")
        faults: Faults = state["faults"]
        now = time.monotonic()
        window.trim(now)
        cost = completion.prompt_tokens + completion.max_tokens
        over_tokens = faults.tokens_per_minute is not None and window.tokens() + cost > faults.tokens_per_minute
        over_requests = faults.requests_per_minute is not None and len(window.events) + 1 > faults.requests_per_minute
        if over_tokens or over_requests:
            limit = "tokens" if over_tokens else "requests"
            return refuse(
                429,
                f"Rate limit reached for {limit} per minute.",
                "rate_limit_exceeded",
                {"Retry-After": str(window.retry_after(now))},
            )
        if faults.fail_next > 0:
            state["faults"] = replace(faults, fail_next=faults.fail_next - 1)
            return refuse(503, "The server is overloaded.", "server_error")
        if faults.error_rate > 0 and rng.random() < faults.error_rate:
            return refuse(500, "The server had an error while processing your request.", "server_error")
        window.events.append((now, cost))
        completion = replace(completion, cached_tokens=cache.cached_tokens(completion.prompt))
        if faults.first_byte_delay_seconds > 0:
            await asyncio.sleep(faults.first_byte_delay_seconds)
        model = completion.model or (config.models[0] if config.models else "emulated-api-model")
        reply = Reply(completion, model)
        generated = completion.max_tokens
        duration = generated / config.output_tokens_per_s if config.output_tokens_per_s > 0 else 0.0
        tokens_total.labels("input").inc(completion.prompt_tokens)
        tokens_total.labels("cached_input").inc(completion.cached_tokens)
        tokens_total.labels("output").inc(generated)
        requests_total.labels("200").inc()
        if not completion.stream:
            await asyncio.sleep(duration)
            return web.json_response(reply.body(generated))
        response = await start_stream(request)
        chunks = max(1, min(generated, math.ceil(duration / 0.02)))  # about one chunk per 20 ms
        sent = 0
        for index in range(chunks):
            count = generated * (index + 1) // chunks - sent
            if count > 0:
                await response.write(reply.chunk(sent, count, finish=sent + count >= generated))
                sent += count
            await asyncio.sleep(duration / chunks)
        if completion.include_usage:
            await response.write(reply.usage_chunk(sent))
        await response.write(DONE)
        await response.write_eof()
        return response

    async def chat(request: web.Request) -> web.StreamResponse:
        return await complete(request, chat=True)

    async def text(request: web.Request) -> web.StreamResponse:
        return await complete(request, chat=False)

    async def models(request: web.Request) -> web.Response:
        if not authorised(request):
            return refuse(401, "Incorrect API key provided.", "invalid_api_key")
        return web.json_response(models_body(list(config.models) or ["emulated-api-model"], "hosted-api-emulator"))

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(asdict(state["faults"]))

    async def set_faults(request: web.Request) -> web.Response:
        body = await request.json()
        known = {f.name for f in fields(Faults)}
        unknown = set(body) - known
        if unknown:
            return error_response(400, f"unknown fault fields: {sorted(unknown)}", "invalid_request_error")
        state["faults"] = replace(state["faults"], **body)
        return web.json_response(asdict(state["faults"]))

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", text)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/_emulator/faults", get_faults)
    app.router.add_post("/_emulator/faults", set_faults)
    return app
