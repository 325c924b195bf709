"""The data plane as a client sees it: the official `openai` SDK against the router, and the hostile peers a router
meets in production (compressing, huge events, frozen, throttling with odd Retry-After, key-echoing providers,
clients that leave). Numbers in comments are the issue's points (issue 12)."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import openai
import pytest
import pytest_asyncio
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestServer

from costpolicy.spec import APIPricing
from crossover.contracts import ROUTER_LOCAL_ERRORS, total
from crossover.router.discovery import endpoints_of
from crossover.router.state import RouterState
from tests.router.test_router import KEY, Setup, base, chat, serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest_asyncio.fixture(loop_scope="function")
async def setup() -> AsyncIterator[Setup]:
    s = Setup()
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


def sdk(url: str, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="client-key", max_retries=0, **options)


class Peer:
    """A tiny upstream (engine or provider) with one scripted behaviour; records what it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.cancelled = 0
        self.server: TestServer | None = None

    async def start(self, setup: Setup) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append(await request.json())
            try:
                return await self.handler(request)
            except asyncio.CancelledError:
                self.cancelled += 1  # the router closed the connection: the client's request was cancelled upstream
                raise

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_post("/v1/completions", handle)
        self.server = await serve(app)
        setup.servers.append(self.server)
        return base(self.server)


def completion(text: str = "hello", usage: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "llama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def event(content: str, usage: Any = None, choices: bool = True) -> bytes:
    chunk: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "llama"}
    chunk["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}] if choices else []
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


# ---- the official SDK on every endpoint and path ----------------------------------------------------------------

SDK_CASES = [
    # (path, endpoint, stream, include_usage)
    (path, endpoint, stream, usage)
    for path in ("self", "api")
    for endpoint in ("chat", "completions")
    for stream, usage in ((False, False), (True, False), (True, True))
]


@pytest.mark.parametrize(("path", "endpoint", "stream", "usage"), SDK_CASES)
async def test_the_official_sdk_works_on_every_endpoint_and_path(
    setup: Setup, path: str, endpoint: str, stream: bool, usage: bool
) -> None:
    if path == "self":
        setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api()
    client = sdk(await setup.start(spill="1" if path == "api" else "0"))
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
    served = "hosted-small" if path == "api" else "llama"
    if endpoint == "chat":
        call = client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "abcd" * 4}], max_tokens=5, stream=stream, **options
        )
    else:
        call = client.completions.create(model="llama", prompt="abcd" * 4, max_tokens=5, stream=stream, **options)
    result = await call
    if not stream:
        assert result.model == served and result.usage is not None and result.usage.completion_tokens == 5
        return
    chunks = [chunk async for chunk in result]  # type: ignore[union-attr]
    text = "".join(
        (c.choices[0].delta.content or "") if endpoint == "chat" else c.choices[0].text for c in chunks if c.choices
    )
    assert len(text.split()) == 5
    usages = [c.usage for c in chunks if c.usage is not None]
    assert [u.completion_tokens for u in usages] == ([5] if usage else [])
    counted = setup.value("crossover_router_tokens_total", direction="output", backend=path, outcome="ok")
    assert counted == 5


async def test_models_list_and_retrieve(setup: Setup) -> None:  # 13
    client = sdk(await setup.start())
    listed = await client.models.list()
    assert [(model.id, model.object) for model in listed.data] == [("llama", "model")]
    assert isinstance(listed.data[0].created, int) and listed.data[0].created > 0
    one = await client.models.retrieve("llama")
    assert one.id == "llama" and one.created == listed.data[0].created
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-unknown")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("path", ["self", "api"])
async def test_unknown_model_is_404_on_both_paths(setup: Setup, path: str) -> None:  # 5
    if path == "self":
        setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    await setup.api()
    client = sdk(await setup.start(spill="1" if path == "api" else "0"))
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"


# ---- 1: compression ---------------------------------------------------------------------------------------------


async def gzipping(request: web.Request) -> web.StreamResponse:
    """A provider that compresses whatever the client accepts (this one ignores Accept-Encoding altogether)."""
    body = await request.json()
    if not body.get("stream"):
        data = gzip.compress(json.dumps(completion("zipped words", USAGE)).encode())
        return web.Response(body=data, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})
    await response.prepare(request)
    stream = event("zipped ") + event("words") + event("", USAGE, choices=False) + b"data: [DONE]\n\n"
    await response.write(gzip.compress(stream))
    await response.write_eof()
    return response


@pytest.mark.parametrize("stream", [False, True])
async def test_a_compressing_upstream_reaches_the_client_decoded_and_counted(setup: Setup, stream: bool) -> None:
    peer = Peer(gzipping)
    setup.state.set_endpoints({await peer.start(setup)})
    client = sdk(await setup.start())
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(model="llama", messages=messages, stream=True)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = (await client.chat.completions.create(model="llama", messages=messages)).choices[0].message.content or ""
    assert text == "zipped words"
    assert setup.value("crossover_router_tokens_total", direction="output", backend="self", outcome="ok") == 3


# ---- 2: events larger than any line limit ---------------------------------------------------------------------


async def test_an_sse_event_over_one_mebibyte_passes_intact(setup: Setup) -> None:
    big = "x" * (1024 * 1024 + 17)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event("start "))
        payload = event(big)
        for i in range(0, len(payload), 100_000):  # in pieces, as a socket delivers it
            await response.write(payload[i : i + 100_000])
        await response.write(event("", USAGE, choices=False) + b"data: [DONE]\n\n")
        return response

    peer = Peer(huge)
    setup.state.set_endpoints({await peer.start(setup)})
    client = sdk(await setup.start())
    stream = await client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "start " + big
    assert setup.value("crossover_router_requests_total", backend="self", outcome="ok") == 1


# ---- 3: clients that leave --------------------------------------------------------------------------------------


async def test_an_abandoned_request_is_cancelled_upstream_and_never_sent_to_the_api(
    setup: Setup, http: ClientSession
) -> None:
    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response(completion())

    peer = Peer(slow)
    setup.state.set_endpoints({await peer.start(setup)})
    api = await setup.api()
    url = await setup.start()
    with pytest.raises(TimeoutError):
        async with http.post(f"{url}/v1/chat/completions", json=chat(), timeout=ClientTimeout(total=0.5)) as r:
            await r.read()
    for _ in range(100):  # the router notices the client left and closes the upstream connection
        if peer.cancelled:
            break
        await asyncio.sleep(0.05)
    assert peer.cancelled == 1
    assert peer.server is not None
    await peer.server.close()  # the pod dies after its client left: nothing may be re-sent anywhere
    await asyncio.sleep(0.2)
    async with http.get(api.make_url("/metrics")) as response:
        assert "emulator_api_requests_total{" not in await response.text()
    assert setup.value("crossover_router_requests_total", backend="self", outcome="client_closed") == 1


# ---- 4: Retry-After in all its forms ----------------------------------------------------------------------------

CEILING = 120.0


def http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


RETRY_AFTER = [
    # (header, lowest and highest Retry-After the router then answers its own clients with)
    ("7", 7, 7),
    ("2.5", 3, 3),
    ("date+30", 28, 31),  # an HTTP-date 30 s ahead (made when the 429 is sent)
    ("date-30", 1, 1),
    ("nan", 1, 1),
    ("inf", CEILING, CEILING),
    ("1e12", CEILING, CEILING),
    ("-5", 1, 1),
    ("soon, maybe", 1, 1),
    ("", 1, 1),
]


@pytest.mark.parametrize(("header", "low", "high"), RETRY_AFTER)
async def test_api_only_honours_retry_after_in_all_its_forms(
    setup: Setup, http: ClientSession, header: str, low: float, high: float
) -> None:
    async def throttling(_: web.Request) -> web.StreamResponse:
        error = {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit"}}
        value = http_date(float(header[4:])) if header.startswith("date") else header
        return web.json_response(error, status=429, headers={"Retry-After": value})

    peer = Peer(throttling)
    api_url = await peer.start(setup)
    await setup.api()
    from crossover.router.state import APITarget

    assert setup.state.api is not None
    setup.state.api = APITarget(f"{api_url}/v1", "hosted-small", setup.state.api.pricing)
    url = await setup.start(mode="APIOnly", backoff_ceiling_seconds=CEILING)
    statuses, retries = [], []
    for _ in range(4):
        async with http.post(f"{url}/v1/chat/completions", json=chat()) as response:
            statuses.append(response.status)
            retries.append(int(response.headers["Retry-After"]))
            body = await response.json()
            assert set(body["error"]) == {"message", "type", "param", "code"}
    assert statuses == [429] * 4
    assert len(peer.requests) == 1  # backed off: the next three never reached the API
    assert all(low - 1 <= r <= high for r in retries[1:]) and low <= retries[0] <= high


# ---- 5 and 6: errors in OpenAI's shape, provider errors passed on without the key --------------------------------


def assert_openai_error(status: int, body: Any, headers: Any) -> None:
    assert headers["Content-Type"].startswith("application/json"), (status, headers)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"] != "crossover_router"
    assert error["code"] is None or isinstance(error["code"], str)


async def request_raw(http: ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.request(method, url, **kw) as response:
        return response.status, json.loads(await response.read()), response.headers


async def hang(_: web.Request) -> web.StreamResponse:
    await asyncio.sleep(30)
    return web.Response()


ROUTER_ERRORS = [
    # (status, how to provoke it)
    (400, "bad-json"),
    (400, "no-model"),
    (404, "unknown-path"),
    (404, "unknown-model"),
    (405, "wrong-method"),
    (413, "too-large"),
    (429, "no-capacity"),
    (502, "refused"),
    (503, "not-ready"),
    (504, "frozen"),
]


@pytest.mark.parametrize(("status", "case"), ROUTER_ERRORS)
async def test_every_router_error_is_openais_shape_and_counted(
    setup: Setup, http: ClientSession, status: int, case: str
) -> None:
    settings: dict[str, Any] = {"max_body_bytes": 1000, "first_byte_timeout_seconds": 0.3, "queue_timeout_seconds": 0}
    if case == "refused":
        setup.state.set_endpoints({"http://127.0.0.1:9"})
    if case == "frozen":
        setup.state.set_endpoints({await Peer(hang).start(setup)})
    url = await setup.start(mode="SelfHostedOnly", **settings)
    if case == "not-ready":
        setup.state.policy = None
    method, path, kw = "POST", "/v1/chat/completions", {"json": chat()}
    if case == "bad-json":
        kw = {"data": b"{not json", "headers": {"Content-Type": "application/json"}}
    elif case == "no-model":
        kw = {"json": {"messages": []}}
    elif case == "unknown-path":
        path = "/v1/embeddingz"
    elif case == "unknown-model":
        kw = {"json": {**chat(), "model": "nope"}}
    elif case == "wrong-method":
        method = "GET"
    elif case == "too-large":
        kw = {"json": {**chat(), "pad": "x" * 2000}}
    got, body, headers = await request_raw(http, method, f"{url}{path}", **kw)
    assert got == status, body
    assert_openai_error(got, body, headers)
    if status < 500 and case not in ("unknown-path", "wrong-method"):
        counted = sum(
            setup.value(total(ROUTER_LOCAL_ERRORS), status=str(status), code=code)
            for code in (body["error"]["code"] or "",)
        )
        assert counted == 1


async def test_an_unexpected_failure_is_a_500_in_openais_shape(
    setup: Setup, http: ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await setup.start()

    async def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    from crossover.router import proxy

    monkeypatch.setattr(proxy.Router, "_serve", broken)
    status, body, headers = await request_raw(http, "POST", f"{url}/v1/chat/completions", json=chat())
    assert status == 500
    assert_openai_error(status, body, headers)


async def test_a_mid_stream_failure_is_an_error_event_the_sdk_raises(setup: Setup) -> None:
    async def dying(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event("half "))
        request.transport.close()  # type: ignore[union-attr]
        return response

    setup.state.set_endpoints({await Peer(dying).start(setup)})
    client = sdk(await setup.start())
    stream = await client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "x"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["half "]
    assert caught.value.body is not None
    assert caught.value.type == "server_error" and caught.value.code == "upstream_error"


PROVIDER_ERRORS = [
    # (status, body the provider sends, content type)
    (400, {"error": {"message": f"bad key {KEY}", "type": "invalid_request_error", "param": None, "code": None}}, "j"),
    (
        401,
        {
            "error": {
                "message": f"Incorrect API key provided: {KEY}.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
        "j",
    ),
    (413, f"body too large for key {KEY}", "t"),
    (422, {"detail": [{"msg": f"field required, key {KEY}"}]}, "j"),
    (503, f"<html>overloaded {KEY}</html>", "t"),
]


@pytest.mark.parametrize(("status", "sent", "kind"), PROVIDER_ERRORS)
async def test_provider_errors_pass_through_sanitised_with_request_id_and_rate_limits(
    setup: Setup, http: ClientSession, status: int, sent: Any, kind: str
) -> None:
    headers = {"x-request-id": "req_123", "x-ratelimit-remaining-requests": "9", "x-echo": KEY}

    async def failing(_: web.Request) -> web.StreamResponse:
        if kind == "j":
            return web.json_response(sent, status=status, headers=headers)
        return web.Response(text=sent, status=status, headers=headers)

    peer = Peer(failing)
    api_url = await peer.start(setup)
    from crossover.router.state import APITarget

    setup.state.api = APITarget(f"{api_url}/v1", "hosted-small", setup_pricing())
    url = await setup.start(mode="APIOnly")
    got, body, answered = await request_raw(http, "POST", f"{url}/v1/chat/completions", json=chat())
    assert got == status
    assert_openai_error(got, body, answered)
    raw = json.dumps(body) + json.dumps(dict(answered))
    assert KEY not in raw
    assert answered["x-request-id"] == "req_123" and answered["x-ratelimit-remaining-requests"] == "9"
    if kind == "j" and "error" in sent:
        assert body["error"]["type"] == sent["error"]["type"] and body["error"]["code"] == sent["error"]["code"]


def setup_pricing() -> Any:
    from tests.router.test_router import PRICING

    return PRICING


# ---- 7: malformed usage and hostile JSON ------------------------------------------------------------------------

MALFORMED_USAGE = [[], {"prompt_tokens": "7", "completion_tokens": "3"}, {"prompt_tokens": -7, "completion_tokens": 3},
                   {"prompt_tokens": 7}, "lots", {"prompt_tokens": 1e400, "completion_tokens": True}]  # fmt: skip


@pytest.mark.parametrize("usage", MALFORMED_USAGE)
@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_usage_is_estimated_not_a_crash(setup: Setup, usage: Any, stream: bool) -> None:
    async def odd(request: web.Request) -> web.StreamResponse:
        if not (await request.json()).get("stream"):
            return web.Response(
                body=json.dumps(completion("four words of text", usage)), content_type="application/json"
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event("four words of text") + event("", usage, choices=False) + b"data: [DONE]\n\n")
        return response

    setup.state.set_endpoints({await Peer(odd).start(setup)})
    client = sdk(await setup.start())
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(model="llama", messages=messages, stream=True)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = (await client.chat.completions.create(model="llama", messages=messages)).choices[0].message.content or ""
    assert text == "four words of text"
    output = setup.value("crossover_router_tokens_total", direction="output", backend="self", outcome="ok")
    assert output == 5  # the documented estimate: 18 bytes of text at 4 bytes per token, rounded up


async def test_deeply_nested_json_is_a_400_not_a_crash(setup: Setup, http: ClientSession) -> None:
    url = await setup.start()
    deep = b'{"model":"llama","messages":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    status, body, headers = await request_raw(
        http, "POST", f"{url}/v1/chat/completions", data=deep, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert_openai_error(status, body, headers)


# ---- 8: frozen peers and trickling clients ------------------------------------------------------------------------


async def test_a_frozen_pod_times_out_and_the_request_goes_elsewhere(setup: Setup) -> None:
    setup.state.set_endpoints({await Peer(hang).start(setup)})
    await setup.api()
    client = sdk(await setup.start(first_byte_timeout_seconds=0.3))
    answer = await client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert answer.model == "hosted-small"  # the frozen pod held it 0.3 s, then the API served it


async def test_a_stream_that_goes_silent_ends_with_a_timeout_event(setup: Setup) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event("first "))
        await asyncio.sleep(30)
        return response

    setup.state.set_endpoints({await Peer(stalls).start(setup)})
    client = sdk(await setup.start(idle_timeout_seconds=0.3))
    stream = await client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code == "upstream_timeout"


async def test_a_body_that_trickles_is_cut_off(setup: Setup) -> None:
    url = await setup.start(body_read_timeout_seconds=0.3)
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)  # the router answers without the rest of the body
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"body_timeout"' in answer


# ---- 9: bodies at the cap -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)])
@pytest.mark.parametrize("chunked", [False, True])
async def test_bodies_at_the_cap(setup: Setup, http: ClientSession, extra: int, status: int, chunked: bool) -> None:
    setup.state.set_endpoints({await setup.engine(decode_tokens_per_s=1e6)})
    cap = 64 * 1024
    url = await setup.start(max_body_bytes=cap)
    body = json.dumps({**chat(), "user": ""}).encode()
    body = body.replace(b'"user": ""', b'"user": "' + b"u" * (cap - len(body)) + b'"')
    assert len(body) == cap
    body += b" " * extra

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 10_000):
            yield body[i : i + 10_000]

    data: Any = pieces() if chunked else body
    async with http.post(f"{url}/v1/chat/completions", data=data, headers={"Content-Type": "application/json"}) as r:
        assert r.status == status
        if status == 413:
            assert_openai_error(413, await r.json(), r.headers)


def test_the_default_cap_is_sized_to_the_pod(tmp_path: Any) -> None:
    from crossover.router.proxy import default_max_body_bytes

    limit = tmp_path / "memory.max"
    cases = {"536870912": 16 * 1024 * 1024, "max": 8 * 1024 * 1024, "8589934592": 32 * 1024 * 1024}
    for text, expected in cases.items():
        limit.write_text(text + "\n")
        assert default_max_body_bytes(limit) == expected
    assert default_max_body_bytes(tmp_path / "absent") == 8 * 1024 * 1024


# ---- 10: a bounded, event-driven queue ------------------------------------------------------------------------------


async def test_the_queue_is_bounded_and_a_freed_slot_wakes_the_next(setup: Setup, http: ClientSession) -> None:
    gate = asyncio.Event()

    async def held(_: web.Request) -> web.StreamResponse:
        await gate.wait()
        return web.json_response(completion("done", USAGE))

    setup.state.set_endpoints({await Peer(held).start(setup)})
    url = await setup.start(mode="SelfHostedOnly", max_inflight_per_pod=1, max_queue=2, queue_timeout_seconds=30)

    def send() -> asyncio.Future[tuple[int, Any, Any]]:
        return asyncio.ensure_future(request_raw(http, "POST", f"{url}/v1/chat/completions", json=chat()))

    tasks = [send()]
    while not setup.state.endpoints or next(iter(setup.state.endpoints.values())).inflight < 1:
        await asyncio.sleep(0.01)
    tasks += [send(), send()]
    while setup.state.queued < 2:
        await asyncio.sleep(0.01)
    status, body, headers = await request_raw(http, "POST", f"{url}/v1/chat/completions", json=chat())
    assert status == 429 and body["error"]["code"] == "queue_full" and int(headers["Retry-After"]) >= 1
    gate.set()
    results = await asyncio.gather(*tasks)
    assert [r[0] for r in results] == [200, 200, 200]  # each woken when the one before finished, well before 30 s
    assert setup.state.queued == 0


# ---- 11: drain, and in-flight counts that survive readiness flaps ---------------------------------------------------


async def test_a_pod_that_flaps_keeps_its_in_flight_count(setup: Setup, http: ClientSession) -> None:
    engine = await setup.engine(decode_tokens_per_s=40)
    setup.state.set_endpoints({engine})  # static mode: the URL is the identity (Kubernetes: the targetRef uid)
    await setup.api()
    url = await setup.start(max_inflight_per_pod=1)
    slow = asyncio.ensure_future(request_raw(http, "POST", f"{url}/v1/chat/completions", json=chat(10)))
    await asyncio.sleep(0.1)
    setup.state.set_endpoints(set())  # the pod leaves readiness...
    setup.state.set_endpoints({engine})  # ...and comes back with its request still running
    status, body, _ = await request_raw(http, "POST", f"{url}/v1/chat/completions", json=chat())
    assert status == 200 and body["model"] == "hosted-small"  # the pod is still full: overflow to the API
    assert (await slow)[0] == 200
    assert setup.state.endpoints[engine].inflight == 0


def test_endpoint_identity_comes_from_the_target_ref() -> None:
    def slice_of(uid: str, ip: str) -> dict[str, Any]:
        return {
            "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "targetRef": {"kind": "Pod", "uid": uid}}],
        }

    pods = endpoints_of({"a": slice_of("uid-1", "10.0.0.1"), "b": slice_of("uid-2", "10.0.0.2")})
    assert pods == {"uid-1@8000": "http://10.0.0.1:8000", "uid-2@8000": "http://10.0.0.2:8000"}
    state = RouterState()
    state.set_endpoints(pods)
    state.acquire(state.endpoints["uid-1@8000"])
    state.set_endpoints({"uid-2@8000": "http://10.0.0.2:8000"})  # uid-1 not ready
    state.set_endpoints(pods)  # ready again
    assert state.endpoints["uid-1@8000"].inflight == 1


# ---- 12: honest spend when clients leave ---------------------------------------------------------------------


async def test_a_client_that_leaves_a_paid_stream_is_billed_for_what_was_streamed(setup: Setup) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(1000):
            await response.write(event("word "))  # 5 bytes of text per event
            await asyncio.sleep(0.01)
        return response

    peer = Peer(endless)
    api_url = await peer.start(setup)
    from crossover.router.state import APITarget

    setup.state.api = APITarget(f"{api_url}/v1", "hosted-small", setup_pricing())
    client = sdk(await setup.start(mode="APIOnly"))
    stream = await client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "abcd" * 100}], stream=True
    )
    received = 0
    async for _ in stream:
        received += 1
        if received == 20:
            break
    await stream.close()
    for _ in range(100):
        if setup.value("crossover_router_requests_total", backend="api", outcome="client_closed"):
            break
        await asyncio.sleep(0.05)
    prompt = setup.value("crossover_router_tokens_total", direction="input", backend="api", outcome="client_closed")
    output = setup.value("crossover_router_tokens_total", direction="output", backend="api", outcome="client_closed")
    assert prompt >= 100  # 400 characters of prompt: at least 100 tokens by the estimate
    assert output >= 20 * 5 / 4  # at least what the client received, at 4 bytes a token
    spend = setup.value("crossover_router_api_spend_dollars_total")
    assert spend == pytest.approx((prompt * 1.0 + output * 5.0) / 1e6)


async def test_an_abandoned_paid_request_is_billed_its_prompt_and_max_tokens(setup: Setup, http: ClientSession) -> None:
    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response(completion())

    peer = Peer(slow)
    api_url = await peer.start(setup)
    from crossover.router.state import APITarget

    setup.state.api = APITarget(f"{api_url}/v1", "hosted-small", setup_pricing())
    url = await setup.start(mode="APIOnly")
    with pytest.raises(TimeoutError):
        async with http.post(
            f"{url}/v1/chat/completions", json=chat(max_tokens=50), timeout=ClientTimeout(total=0.3)
        ) as r:
            await r.read()
    for _ in range(100):
        if setup.value("crossover_router_api_spend_dollars_total"):
            break
        await asyncio.sleep(0.05)
    assert (
        setup.value("crossover_router_tokens_total", direction="output", backend="api", outcome="client_closed") == 50
    )
    assert setup.value("crossover_router_tokens_total", direction="input", backend="api", outcome="client_closed") > 0


# ---- 11: drain through a preStop window, as the real process does it -------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_fails_readiness_keeps_listening_then_finishes_in_flight(
    setup: Setup, http: ClientSession, tmp_path: Any
) -> None:
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    engine = await setup.engine(decode_tokens_per_s=20)
    manifest = yaml.safe_load((Path(__file__).parents[2] / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    manifest["spec"]["model"]["servedName"] = "llama"
    spec = tmp_path / "infd.yaml"
    spec.write_text(yaml.safe_dump(manifest))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "crossover.cli", "router", "--spec-file", str(spec), "--engine-url", engine,
            "--listen", f"127.0.0.1:{port}", "--mode", "SelfHostedOnly", "--drain-delay-seconds", "1.5",
            "--drain-seconds", "20"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            await asyncio.sleep(0.05)
        in_flight = asyncio.ensure_future(
            request_raw_stream(http, f"{url}/v1/chat/completions", chat(max_tokens=60, stream=True))
        )
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503  # readiness fails first...
        async with ClientSession() as fresh:  # ...while a new connection is still served (endpoints propagate)
            status, body, _ = await request_raw(fresh, "POST", f"{url}/v1/chat/completions", json=chat(max_tokens=2))
        assert status == 200 and body["usage"]["completion_tokens"] == 2
        await asyncio.sleep(2.0)
        with pytest.raises(OSError):  # after the window the listener is closed
            async with ClientSession() as fresh, fresh.get(f"{url}/healthz") as response:
                await response.read()
        text = await in_flight  # and the request in flight finished whole
        assert text.rstrip().endswith("data: [DONE]") and text.count('"content"') >= 2
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def request_raw_stream(http: ClientSession, url: str, body: dict[str, Any]) -> str:
    async with http.post(url, json=body) as response:
        assert response.status == 200
        return (await response.read()).decode()


# ---- 14: several workers on one port -------------------------------------------------------------------------


async def test_workers_share_one_port_keep_the_spill_share_and_sum_their_metrics(setup: Setup, tmp_path: Any) -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from aiohttp import TCPConnector
    from prometheus_client.parser import text_string_to_metric_families

    from crossover.contracts import ENV_API_KEY, ROUTER_REQUESTS

    engine = await setup.engine(decode_tokens_per_s=1e6)
    api = await setup.api()
    manifest = yaml.safe_load((Path(__file__).parents[2] / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    manifest["spec"]["model"]["servedName"] = "llama"
    manifest["spec"]["api"]["baseURL"] = f"{base(api)}/v1"
    spec = tmp_path / "infd.yaml"
    spec.write_text(yaml.safe_dump(manifest))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "crossover.cli", "router", "--spec-file", str(spec), "--engine-url", engine,
            "--listen", f"127.0.0.1:{port}", "--spill-fraction", "0.3", "--workers", "2",
            "--drain-delay-seconds", "0"]  # fmt: skip
    process = subprocess.Popen(argv, env={**os.environ, ENV_API_KEY: KEY}, stderr=subprocess.DEVNULL)
    try:
        async with ClientSession(connector=TCPConnector(force_close=True)) as fresh:  # a connection per request
            for _ in range(300):
                try:
                    async with fresh.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # both workers listening
            models = []
            for _ in range(100):
                status, body, _ = await request_raw(fresh, "POST", f"{url}/v1/chat/completions", json=chat())
                assert status == 200
                models.append(body["model"])
            counts = {}
            for _ in range(4):  # whichever worker answers the scrape, it shows the sum over both
                async with fresh.get(f"{url}/metrics") as response:
                    families = text_string_to_metric_families(await response.text())
                served = {
                    (s.labels["backend"], s.labels["outcome"]): s.value
                    for f in families
                    if f.name == ROUTER_REQUESTS
                    for s in f.samples
                    if s.name.endswith("_total")
                }
                counts = {k: v for k, v in served.items() if v}
                assert counts == {
                    ("api", "ok"): models.count(manifest["spec"]["api"]["model"]),
                    ("self", "ok"): models.count("llama"),
                }
        assert (
            abs(models.count(manifest["spec"]["api"]["model"]) - 30) <= 2
        )  # exact per worker: within one request each
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_event_loop_lag_is_measured(setup: Setup) -> None:  # 14: queueing the added-latency histogram misses
    from crossover.contracts import ROUTER_LOOP_LAG

    await setup.start()
    await asyncio.sleep(0.3)
    time.sleep(0.4)  # the loop is busy: a request arriving now would wait this long before its handler starts
    await asyncio.sleep(0.3)
    assert setup.value(f"{ROUTER_LOOP_LAG}_sum") >= 0.2
    assert setup.value(f"{ROUTER_LOOP_LAG}_bucket", le="0.1") < setup.value(f"{ROUTER_LOOP_LAG}_count")


# ---- 9: memory: a large body is held about once, not four times --------------------------------------------------


def test_large_bodies_are_held_about_once() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "bench" / "router_memory.py"
    run = subprocess.run(
        [sys.executable, str(script), "--size-mb", "20", "--concurrency", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    per_body = json.loads(run.stdout.strip().splitlines()[-1])["3"]
    assert per_body <= 2.5, run.stdout  # peak RSS growth per body in flight (it was 3.9 before the fix)


async def test_request_id_and_rate_limit_headers_pass_on_success(setup: Setup) -> None:  # 5
    async def answering(_: web.Request) -> web.StreamResponse:
        headers = {"x-request-id": "req_ok_1", "x-ratelimit-remaining-tokens": "999", "set-cookie": "tracker=1"}
        return web.json_response(completion("fine", USAGE), headers=headers)

    setup.state.set_endpoints({await Peer(answering).start(setup)})
    client = sdk(await setup.start())
    raw = await client.chat.completions.with_raw_response.create(
        model="llama", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-request-id"] == "req_ok_1" and raw.headers["x-ratelimit-remaining-tokens"] == "999"
    assert "set-cookie" not in raw.headers  # only what clients need from a provider, nothing else
    assert raw.parse().choices[0].message.content == "fine"


BODY_CAP_SETTINGS = [
    # (flag, environment, expected cap or error)
    (["--max-body-bytes", "1234"], None, 1234),
    ([], "4321", 4321),
    (["--max-body-bytes", "1234"], "4321", 1234),
    ([], "lots", "must be a positive number of bytes"),
    ([], "0", "must be a positive number of bytes"),
]


@pytest.mark.parametrize(("flag", "env", "expected"), BODY_CAP_SETTINGS)
def test_the_body_cap_comes_from_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, flag: list[str], env: str | None, expected: int | str
) -> None:
    import argparse

    from crossover.commands import router as command
    from crossover.contracts import ENV_ROUTER_MAX_BODY_BYTES

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["router", "--spec-file", "x.yaml", *flag])
    if env is None:
        monkeypatch.delenv(ENV_ROUTER_MAX_BODY_BYTES, raising=False)
    else:
        monkeypatch.setenv(ENV_ROUTER_MAX_BODY_BYTES, env)
    if isinstance(expected, int):
        assert command._max_body(args) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            command._max_body(args)


# ---- issue 13: the API's prompt-cache hits are counted and billed at the cached price ---------------------------


async def test_api_cache_hits_are_counted_and_billed_at_the_cached_price(setup: Setup) -> None:
    from crossover.router.state import APITarget

    await setup.api()  # the hosted-API emulator: OpenAI-style automatic prompt caching from 1,024 tokens
    assert setup.state.api is not None
    pricing = APIPricing(
        input_per_million=Decimal("1.00"), output_per_million=Decimal("5.00"), cached_input_per_million=Decimal("0.10")
    )
    setup.state.api = APITarget(setup.state.api.base_url, setup.state.api.model, pricing)
    client = sdk(await setup.start(mode="APIOnly"))
    prompt = "abcd" * 1200  # 1,200 tokens at the emulator's 4 characters a token
    usages = []
    for _ in range(2):
        reply = await client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": prompt}], max_tokens=3
        )
        assert reply.usage is not None
        usages.append(reply.usage)
    assert usages[0].prompt_tokens_details is None or not usages[0].prompt_tokens_details.cached_tokens
    assert usages[1].prompt_tokens_details is not None and usages[1].prompt_tokens_details.cached_tokens == 1152
    assert setup.value("crossover_router_api_cached_input_tokens_total") == 1152
    spend = setup.value("crossover_router_api_spend_dollars_total")
    assert spend == pytest.approx((1200 * 1.0 + 3 * 5.0 + (1200 - 1152) * 1.0 + 1152 * 0.1 + 3 * 5.0) / 1e6)
