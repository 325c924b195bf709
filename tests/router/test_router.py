"""The router over real HTTP on 127.0.0.1, in front of the vLLM and hosted-API emulators (and a few broken peers)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from costpolicy.spec import APIPricing
from crossover.contracts import ROUTER_API_SPEND, ROUTER_REQUESTS, ROUTER_TOKENS, total
from crossover.router.app import build_router_app
from crossover.router.metrics import RouterMetrics
from crossover.router.proxy import RouterSettings
from crossover.router.state import APITarget, RouterState, RoutingPolicy
from crossover_lab.emulators.hosted_api import Faults, HostedAPIConfig, build_hosted_api_app
from crossover_lab.emulators.vllm import VLLMEmulatorConfig, build_vllm_app

KEY = "sk-router-test-key-0123456789"
REQUESTS, TOKENS, SPEND = total(ROUTER_REQUESTS), total(ROUTER_TOKENS), total(ROUTER_API_SPEND)
PRICING = APIPricing(input_per_million=Decimal("1.00"), output_per_million=Decimal("5.00"))


async def serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


class Setup:
    def __init__(self) -> None:
        self.servers: list[TestServer] = []
        self.metrics = RouterMetrics()
        self.state = RouterState()
        self.router: TestServer | None = None

    async def engine(self, **config: Any) -> str:
        server = await serve(build_vllm_app(VLLMEmulatorConfig(model="llama", **config)))
        self.servers.append(server)
        return base(server)

    async def api(self, **faults: Any) -> TestServer:
        server = await serve(
            build_hosted_api_app(HostedAPIConfig(api_key=KEY, output_tokens_per_s=1e6, faults=Faults(**faults)))
        )
        self.servers.append(server)
        self.state.api = APITarget(f"{base(server)}/v1", "hosted-small", PRICING)
        return server

    async def start(
        self,
        mode: str = "CostOptimized",
        spill: str = "0",
        available: bool = True,
        policy: dict[str, Any] | None = None,
        **settings: Any,
    ) -> str:
        self.state.policy = RoutingPolicy(mode, Decimal(spill), available, **(policy or {}))
        self.state.served_model = "llama"
        app = build_router_app(self.state, RouterSettings(api_key=KEY, **settings), self.metrics)
        self.router = await serve(app)
        return base(self.router)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def close(self) -> None:
        for server in [*([self.router] if self.router else []), *self.servers]:
            await server.close()


@pytest_asyncio.fixture(loop_scope="function")
async def setup() -> AsyncIterator[Setup]:
    s = Setup()
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


def chat(max_tokens: int = 5, stream: bool = False, usage: bool = False, prompt_tokens: int = 4) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "llama",
        "messages": [{"role": "user", "content": "abcd" * prompt_tokens}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


async def post(http: ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    async with http.post(f"{url}/v1/chat/completions", json=body) as response:
        text = await response.text()
        headers = dict(response.headers)
        if body.get("stream") and response.status == 200:
            events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
            return response.status, [e if e == "[DONE]" else json.loads(e) for e in events], headers
        return response.status, json.loads(text), headers


async def test_spill_fraction_is_honoured_within_two_points(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api()
    url = await setup.start(spill="0.3")
    models = []
    for _ in range(200):
        status, body, _ = await post(http, url, chat())
        assert status == 200
        models.append(body["model"])
    share = models.count("hosted-small") / len(models)
    assert abs(share - 0.3) <= 0.02
    assert setup.value(REQUESTS, backend="api", outcome="ok") == models.count("hosted-small")


async def test_tokens_are_counted_once_and_spend_is_priced(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api()
    url = await setup.start(spill="0.5")
    seen = {"input": 0, "output": 0}
    for i in range(20):
        stream = i % 2 == 0
        status, body, _ = await post(http, url, chat(max_tokens=3 + i, stream=stream, usage=True, prompt_tokens=10))
        assert status == 200
        usage = body[-2]["usage"] if stream else body["usage"]
        seen["input"] += usage["prompt_tokens"]
        seen["output"] += usage["completion_tokens"]
    counted = {
        d: sum(setup.value(TOKENS, direction=d, backend=b, outcome="ok") for b in ("self", "api"))
        for d in ("input", "output")
    }
    assert counted == {"input": seen["input"], "output": seen["output"]}
    api_in = setup.value(TOKENS, direction="input", backend="api", outcome="ok")
    api_out = setup.value(TOKENS, direction="output", backend="api", outcome="ok")
    spend = setup.value(SPEND)
    assert spend == pytest.approx((api_in * 1.0 + api_out * 5.0) / 1e6)


async def test_usage_chunk_is_stripped_unless_the_client_asked(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    url = await setup.start()
    _, events, _ = await post(http, url, chat(stream=True))
    assert events[-1] == "[DONE]"
    assert all(e == "[DONE]" or e["choices"] for e in events)  # no usage-only chunk
    assert setup.value(TOKENS, direction="output", backend="self", outcome="ok") == 5


async def test_no_ready_pods_spills_to_the_api_with_model_rewritten(setup: Setup, http: ClientSession) -> None:
    await setup.api()
    url = await setup.start()
    status, body, _ = await post(http, url, chat())
    assert status == 200 and body["model"] == "hosted-small"


async def test_overflow_spills_instead_of_queueing(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=200)})  # slow: requests stay in flight
    await setup.api()
    url = await setup.start(max_inflight_per_pod=2)
    results = await asyncio.gather(*(post(http, url, chat(max_tokens=40)) for _ in range(8)))
    models = [body["model"] for status, body, _ in results if status == 200]
    assert len(models) == 8
    assert 1 <= models.count("llama") <= 2 + 1 and models.count("hosted-small") >= 5


async def test_no_ready_pods_waits_for_one_when_cold_start_spill_is_off(setup: Setup, http: ClientSession) -> None:
    await setup.api()
    url = await setup.start(policy={"spill_on_cold_start": False}, queue_timeout_seconds=10)
    engine = await setup.engine(decode_tokens_per_s=1e6)
    pending = asyncio.ensure_future(post(http, url, chat()))
    await asyncio.sleep(0.2)
    assert not pending.done()  # waiting for a pod, not spilled
    setup.state.set_endpoints({engine})  # the replica becomes Ready
    status, body, _ = await pending
    assert status == 200 and body["model"] == "llama"
    assert setup.value(REQUESTS, backend="api", outcome="ok") == 0


async def test_overflow_queues_when_saturation_spill_is_off(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=2000)})
    await setup.api()
    url = await setup.start(policy={"spill_on_saturation": False}, max_inflight_per_pod=2, queue_timeout_seconds=30)
    results = await asyncio.gather(*(post(http, url, chat(max_tokens=40)) for _ in range(8)))
    assert [body["model"] for _, body, _ in results] == ["llama"] * 8
    assert setup.value(REQUESTS, backend="api", outcome="ok") == 0


@pytest.mark.parametrize(
    ("pods", "spill", "cap"),
    [(0, "0", "0.25"), (1, "1", "0.5"), (0, "0", "0")],
    ids=["cold-start-spill", "operator-share-above-the-cap", "never"],
)
async def test_max_spill_fraction_caps_every_kind_of_spill(
    setup: Setup, http: ClientSession, pods: int, spill: str, cap: str
) -> None:
    if pods:
        setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api()
    url = await setup.start(spill=spill, policy={"max_spill_fraction": Decimal(cap)}, queue_timeout_seconds=0.05)
    results = [await post(http, url, chat()) for _ in range(40)]
    to_api = sum(1 for status, body, _ in results if status == 200 and body["model"] == "hosted-small")
    assert to_api <= Decimal(cap) * 40
    assert to_api >= Decimal(cap) * 40 - 2  # a cap, not a stop: spill goes on up to it
    if not pods:  # with no pod, what the API may not take is refused (429), never lost silently
        assert all(status == 429 for status, body, _ in results if body.get("model") != "hosted-small")


async def test_self_hosted_only_never_spills_and_answers_429_when_saturated(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=100)})
    await setup.api()
    url = await setup.start(mode="SelfHostedOnly", spill="1", max_inflight_per_pod=1, queue_timeout_seconds=0.2)
    results = await asyncio.gather(*(post(http, url, chat(max_tokens=50)) for _ in range(3)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses[0] == 200 and statuses[-1] == 429
    assert all(body.get("model") != "hosted-small" for status, body, _ in results if status == 200)
    rejected = [headers for status, _, headers in results if status == 429]
    assert all(int(h["Retry-After"]) >= 1 for h in rejected)


async def test_api_unavailable_stops_spilling(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api()
    url = await setup.start(spill="1", available=False)
    for _ in range(5):
        status, body, _ = await post(http, url, chat())
        assert status == 200 and body["model"] == "llama"


async def test_api_429_backs_off_to_self_hosted(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api(tokens_per_minute=1)  # every API call is throttled
    url = await setup.start(spill="1")
    for _ in range(4):
        status, body, _ = await post(http, url, chat())
        assert status == 200 and body["model"] == "llama"
    assert setup.value(REQUESTS, backend="api", outcome="throttled") == 1  # then backed off


async def broken_engine(behaviour: str) -> TestServer:
    """An engine that fails in one chosen way."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if behaviour == "500":
            return web.Response(status=500, text="boom")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[{"index":0,"delta":{"content":"half "}}]}\n\n')
        request.transport.close()  # type: ignore[union-attr]  # dies mid-stream
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    return await serve(app)


async def test_failover_before_the_first_byte_tries_another_pod_then_the_api(setup: Setup, http: ClientSession) -> None:
    bad = await broken_engine("500")
    setup.servers.append(bad)
    refused = "http://127.0.0.1:9"  # nothing listens on the discard port
    setup.state.set_endpoints({base(bad), refused})
    await setup.api()
    url = await setup.start()
    status, body, _ = await post(http, url, chat())
    assert status == 200 and body["model"] == "hosted-small"  # both pods failed before a byte: the API served it
    good = await setup.engine(decode_tokens_per_s=1e6)
    setup.state.set_endpoints({base(bad), good})
    for _ in range(4):
        status, body, _ = await post(http, url, chat())
        assert status == 200 and body["model"] == "llama"


async def test_failure_mid_stream_is_reported_not_retried(setup: Setup, http: ClientSession) -> None:
    bad = await broken_engine("midstream")
    setup.servers.append(bad)
    setup.state.set_endpoints({base(bad)})
    api = await setup.api()
    url = await setup.start()
    async with http.post(f"{url}/v1/chat/completions", json=chat(stream=True)) as response:
        text = await response.text()
    assert "half" in text and "upstream failed mid-stream" in text
    assert text.count("half") == 1
    assert setup.value(REQUESTS, backend="self", outcome="error") == 1
    assert setup.value(REQUESTS, backend="api", outcome="ok") == 0
    async with http.get(api.make_url("/metrics")) as response:
        assert 'emulator_api_requests_total{status="200"}' not in await response.text()


async def test_api_key_never_reaches_logs_or_metrics(
    setup: Setup, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await setup.api(fail_next=1)
    url = await setup.start(spill="1")
    first, error, _ = await post(http, url, chat())
    second, _, _ = await post(http, url, chat())
    assert (first, second) == (503, 200)  # the provider's injected 503 passed on, then a normal answer
    assert error["error"]["message"] == "The server is overloaded."
    async with http.get(f"{url}/metrics") as response:
        metrics = await response.text()
    assert KEY not in caplog.text and KEY not in metrics


async def test_pods_leaving_finish_their_requests(setup: Setup, http: ClientSession) -> None:
    engine = await setup.engine(decode_tokens_per_s=100)
    setup.state.set_endpoints({engine})
    url = await setup.start(mode="SelfHostedOnly")
    slow: Awaitable[tuple[int, Any, dict[str, str]]] = post(http, url, chat(max_tokens=30, stream=True, usage=True))
    task = asyncio.ensure_future(slow)
    await asyncio.sleep(0.1)
    setup.state.set_endpoints(set())  # the pod left the EndpointSlice mid-request
    status, events, _ = await task
    assert status == 200 and events[-2]["usage"]["completion_tokens"] == 30


async def test_shutdown_drains_in_flight_streams(setup: Setup, http: ClientSession) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=100)})
    url = await setup.start(mode="SelfHostedOnly")
    task = asyncio.ensure_future(post(http, url, chat(max_tokens=30, stream=True, usage=True)))
    await asyncio.sleep(0.1)
    assert setup.router is not None
    closing: Callable[[], Awaitable[None]] = setup.router.close
    await closing()  # graceful: stop accepting, wait for handlers
    setup.router = None
    status, events, _ = await task
    assert status == 200 and events[-1] == "[DONE]"
    assert setup.state.draining
