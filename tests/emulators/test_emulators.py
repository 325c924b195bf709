"""The emulators over real HTTP on 127.0.0.1: OpenAI wire format, honest usage, capacity, cold start, faults."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from crossover_lab.emulators.hosted_api import Faults, HostedAPIConfig, build_hosted_api_app
from crossover_lab.emulators.vllm import VLLMEmulatorConfig, build_vllm_app

KEY = "sk-test-not-a-real-key-123"


async def serve(app: Any) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest_asyncio.fixture(loop_scope="function")
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession() as s:
        yield s


async def read_sse(response: Any) -> list[Any]:
    events: list[Any] = []
    async for raw in response.content:
        line = raw.strip()
        if line.startswith(b"data: "):
            payload = line[6:]
            events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


async def test_vllm_usage_is_honest_streamed_and_not(session: ClientSession) -> None:
    server = await serve(build_vllm_app(VLLMEmulatorConfig(model="m", decode_tokens_per_s=50_000)))
    try:
        body = {"model": "m", "prompt": "x" * 40, "max_tokens": 7}
        async with session.post(server.make_url("/v1/completions"), json=body) as response:
            answer = await response.json()
        assert answer["usage"] == {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}
        assert len(answer["choices"][0]["text"].split()) == 7

        chat = {
            "model": "m",
            "messages": [{"role": "user", "content": "abcd" * 25}],
            "max_tokens": 30,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with session.post(server.make_url("/v1/chat/completions"), json=chat) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = await read_sse(response)
        assert events[-1] == "[DONE]"
        usage = events[-2]["usage"]
        assert usage == {"prompt_tokens": 25, "completion_tokens": 30, "total_tokens": 55}
        words = sum(len(e["choices"][0]["delta"]["content"].split()) for e in events[:-2])
        assert words == 30
        assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    finally:
        await server.close()


async def test_vllm_cold_start_then_ready(session: ClientSession) -> None:
    server = await serve(build_vllm_app(VLLMEmulatorConfig(model="m", cold_start_seconds=0.6)))
    try:
        async with session.get(server.make_url("/health")) as response:
            assert response.status == 503
        async with session.post(server.make_url("/v1/completions"), json={"prompt": "x"}) as response:
            assert response.status == 503
        await asyncio.sleep(0.7)
        async with session.get(server.make_url("/health")) as response:
            assert response.status == 200
    finally:
        await server.close()


async def test_vllm_overload_queues_and_throughput_saturates_at_capacity(session: ClientSession) -> None:
    decode = 2_000.0
    server = await serve(build_vllm_app(VLLMEmulatorConfig(model="m", decode_tokens_per_s=decode, max_batch=4)))
    try:
        waiting_seen: list[float] = []

        async def one() -> float:
            started = time.monotonic()
            body = {"model": "m", "prompt": "x", "max_tokens": 200}
            async with session.post(server.make_url("/v1/completions"), json=body) as response:
                assert (await response.json())["usage"]["completion_tokens"] == 200
            return time.monotonic() - started

        async def watch() -> None:
            for _ in range(10):
                async with session.get(server.make_url("/metrics")) as response:
                    for line in (await response.text()).splitlines():
                        if line.startswith("vllm:num_requests_waiting{"):
                            waiting_seen.append(float(line.rsplit(" ", 1)[1]))
                await asyncio.sleep(0.05)

        started = time.monotonic()
        durations, _ = await asyncio.gather(asyncio.gather(*(one() for _ in range(12))), watch())
        elapsed = time.monotonic() - started
        produced = 12 * 200
        assert max(waiting_seen) > 0  # more than max_batch at once: some waited
        assert produced / elapsed <= decode * 1.1  # never faster than its capacity
        assert produced / elapsed >= decode * 0.5  # and not idling either
        assert max(durations) > 2 * min(durations)  # the queued ones took longer
    finally:
        await server.close()


async def test_vllm_counts_a_request_as_waiting_only_when_the_batch_has_no_room(session: ClientSession) -> None:
    """vLLM admits within a step; a request with room in the batch is running, not waiting, even mid-tick."""
    config = VLLMEmulatorConfig(model="m", decode_tokens_per_s=50.0, max_batch=1, tick_seconds=0.5)
    server = await serve(build_vllm_app(config))

    async def gauges() -> dict[str, float]:
        async with session.get(server.make_url("/metrics")) as response:
            text = await response.text()
        return {
            name: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            for name in ("vllm:num_requests_running", "vllm:num_requests_waiting")
            if line.startswith(name + "{")
        }

    async def one() -> None:
        body = {"model": "m", "prompt": "x", "max_tokens": 20}
        async with session.post(server.make_url("/v1/completions"), json=body) as response:
            await response.read()

    try:
        first = asyncio.create_task(one())
        await asyncio.sleep(0.1)  # inside the first 0.5 s tick
        assert await gauges() == {"vllm:num_requests_running": 1.0, "vllm:num_requests_waiting": 0.0}
        second = asyncio.create_task(one())  # the batch of one is full: this one really waits
        await asyncio.sleep(0.1)
        assert await gauges() == {"vllm:num_requests_running": 1.0, "vllm:num_requests_waiting": 1.0}
        await asyncio.gather(first, second)
    finally:
        await server.close()


async def test_vllm_metrics_have_vllm_names_and_types(session: ClientSession) -> None:
    server = await serve(build_vllm_app(VLLMEmulatorConfig(model="m")))
    try:
        async with session.post(server.make_url("/v1/completions"), json={"prompt": "abcd", "max_tokens": 3}) as r:
            await r.read()
        async with session.get(server.make_url("/metrics")) as response:
            text = await response.text()
        for name, kind in [
            ("vllm:prompt_tokens_total", "counter"),
            ("vllm:generation_tokens_total", "counter"),
            ("vllm:num_requests_running", "gauge"),
            ("vllm:num_requests_waiting", "gauge"),
            ("vllm:kv_cache_usage_perc", "gauge"),
            ("vllm:time_to_first_token_seconds", "histogram"),
            ("vllm:e2e_request_latency_seconds", "histogram"),
            ("vllm:request_queue_time_seconds", "histogram"),
        ]:
            assert f"# TYPE {name} {kind}" in text, name
        assert 'vllm:generation_tokens_total{model_name="m"} 3.0' in text
        assert 'vllm:prompt_tokens_total{model_name="m"} 1.0' in text
    finally:
        await server.close()


async def test_api_checks_the_key_and_never_echoes_it(session: ClientSession) -> None:
    server = await serve(build_hosted_api_app(HostedAPIConfig(api_key=KEY)))
    try:
        body = {"model": "small", "prompt": "abcd", "max_tokens": 2}
        wrong = {"Authorization": "Bearer sk-wrong"}
        async with session.post(server.make_url("/v1/completions"), json=body, headers=wrong) as response:
            assert response.status == 401
            assert KEY not in await response.text()
        right = {"Authorization": f"Bearer {KEY}"}
        async with session.post(server.make_url("/v1/completions"), json=body, headers=right) as response:
            answer = await response.json()
        assert answer["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        assert answer["model"] == "small"
    finally:
        await server.close()


async def test_api_rate_limit_answers_429_with_retry_after(session: ClientSession) -> None:
    server = await serve(build_hosted_api_app(HostedAPIConfig(api_key=KEY, faults=Faults(tokens_per_minute=100))))
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        statuses = []
        for _ in range(5):
            body = {"model": "s", "prompt": "abcd" * 10, "max_tokens": 20}  # 30 tokens each
            async with session.post(server.make_url("/v1/completions"), json=body, headers=headers) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert statuses == [200, 200, 200, 429, 429]
    finally:
        await server.close()


async def test_api_faults_are_toggled_at_runtime(session: ClientSession) -> None:
    server = await serve(build_hosted_api_app(HostedAPIConfig(api_key=KEY, output_tokens_per_s=1e6)))
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {
        "model": "s",
        "messages": [{"role": "user", "content": "abcd"}],
        "max_tokens": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        async with session.post(server.make_url("/_emulator/faults"), json={"fail_next": 2}) as response:
            assert (await response.json())["fail_next"] == 2
        codes = []
        for _ in range(3):
            async with session.post(server.make_url("/v1/chat/completions"), json=body, headers=headers) as response:
                codes.append(response.status)
                if response.status == 200:
                    events = await read_sse(response)
                    assert events[-2]["usage"]["completion_tokens"] == 2
        assert codes == [503, 503, 200]
        async with session.post(server.make_url("/_emulator/faults"), json={"first_byte_delay_seconds": 0.4}):
            pass
        started = time.monotonic()
        async with session.post(server.make_url("/v1/chat/completions"), json=body, headers=headers) as response:
            await response.content.readline()
            assert time.monotonic() - started >= 0.4
        async with session.post(server.make_url("/_emulator/faults"), json={"error_rate": 1.0}):
            pass
        async with session.post(server.make_url("/v1/chat/completions"), json=body, headers=headers) as response:
            assert response.status == 500
        async with session.post(server.make_url("/_emulator/faults"), json={"nonsense": 1}) as response:
            assert response.status == 400
    finally:
        await server.close()


def test_emulators_refuse_non_loopback_addresses() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crossover.cli", "emulate", "vllm", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "127.0.0.0/8" in result.stderr


@pytest.mark.parametrize(
    ("first", "second", "cached"),
    [
        ("ab" * 2000, "ab" * 2000, 0),  # 1,000 tokens: below the 1,024-token minimum, never cached
        ("abcd" * 1100, "abcd" * 1100, 1024),  # same prompt: cached in 128-token steps from 1,024
        ("abcd" * 1400, "abcd" * 1400, 1280),
        ("abcd" * 1400, "abcd" * 1100 + "wxyz" * 300, 1024),  # shared prefix only
        ("abcd" * 1400, "wxyz" + "abcd" * 1400, 0),  # a different first token: no prefix in common
    ],
)
def test_the_hosted_api_prompt_cache_reports_shared_prefixes_like_openai(first: str, second: str, cached: int) -> None:
    from crossover_lab.emulators.openai_wire import PromptCache

    cache = PromptCache()
    assert cache.cached_tokens(first) == 0
    assert cache.cached_tokens(second) == cached
