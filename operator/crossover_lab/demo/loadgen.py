"""Open-loop replay of a request-level trace (Azure format) against any OpenAI-compatible endpoint.

Open loop, as real traffic is: each request starts at its own (time-compressed) timestamp whether or not earlier
ones finished, so a slow backend shows up as latency and queueing, not as a politely reduced load.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp

# The emulators count one prompt token per 4 characters (see crossover_lab.emulators); a prompt of n tokens is 4n chars.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class TraceRequest:
    at: float  # seconds after the trace's first request, in trace time
    input_tokens: int
    output_tokens: int


@dataclass
class RequestResult:
    at: float  # wall seconds after the replay started
    input_tokens: int
    output_tokens: int
    status: int  # HTTP status, 0 for a connection failure
    ttft_seconds: float | None = None
    latency_seconds: float | None = None
    usage_input: int | None = None
    usage_output: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def read_azure_trace(path: Path, max_seconds: float | None = None) -> list[TraceRequest]:
    """Rows `TIMESTAMP,ContextTokens,GeneratedTokens`; the first request is t = 0."""
    out: list[TraceRequest] = []
    start: datetime | None = None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            when = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
            start = start or when
            at = (when - start).total_seconds()
            if max_seconds is not None and at > max_seconds:
                break
            out.append(TraceRequest(at, max(1, int(row["ContextTokens"])), max(1, int(row["GeneratedTokens"]))))
    return out


def prompt_of(tokens: int, request_id: int = 0) -> str:
    """A prompt of `tokens` tokens (4 characters each) that shares no prefix with another request's.

    Traces carry sizes, not text, and say nothing of shared prefixes, so every prompt starts with its own id: with
    one repeated text the hosted API's prompt cache billed nine input tokens in ten at the cached price, the API
    looked several times cheaper than the trace's demand makes it, and a replay's live bill left the simulator's.
    """
    head = f"{request_id % 16**7:07x} "  # two tokens
    return head + "abc " * (tokens - 2) if tokens >= 2 else "abc " * tokens


async def _one(
    session: aiohttp.ClientSession, url: str, model: str, request: TraceRequest, started: float, request_id: int = 0
) -> RequestResult:
    result = RequestResult(time.monotonic() - started, request.input_tokens, request.output_tokens, 0)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt_of(request.input_tokens, request_id)}],
        "max_tokens": request.output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.monotonic()
    try:
        async with session.post(url, json=body) as response:
            result.status = response.status
            if response.status != 200:
                result.error = (await response.text())[:200]
                return result
            async for raw in response.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                if result.ttft_seconds is None:
                    result.ttft_seconds = time.monotonic() - sent
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                chunk = json.loads(payload)
                if chunk.get("error"):
                    result.error = str(chunk["error"])[:200]
                usage = chunk.get("usage")
                if usage:
                    result.usage_input = int(usage["prompt_tokens"])
                    result.usage_output = int(usage["completion_tokens"])
    except (aiohttp.ClientError, TimeoutError) as error:
        result.error = f"{type(error).__name__}: {error}"[:200]
    result.latency_seconds = time.monotonic() - sent
    return result


async def replay(
    requests: list[TraceRequest],
    base_url: str,
    model: str,
    speedup: float,
    on_result: Callable[[RequestResult], None] | None = None,
    stop: asyncio.Event | None = None,
    timeout_seconds: float = 120.0,
) -> list[RequestResult]:
    """Send every request at `at / speedup` wall seconds; returns results in send order."""
    url = base_url.rstrip("/") + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    results: list[RequestResult] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as s:
        started = time.monotonic()
        tasks: list[asyncio.Task[RequestResult]] = []
        for request_id, request in enumerate(requests):
            if stop is not None and stop.is_set():
                break
            delay = started + request.at / speedup - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(_one(s, url, model, request, started, request_id))
            if on_result is not None:
                task.add_done_callback(lambda t: on_result(t.result()) if not t.cancelled() else None)
            tasks.append(task)
        results = list(await asyncio.gather(*tasks))
    return results
