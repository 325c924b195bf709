"""The router's aiohttp application: OpenAI-compatible endpoints, health, readiness and metrics; and how it is
served (uvloop, handler cancellation when a client leaves, a drain that loses nothing)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from crossover.router.metrics import RouterMetrics
from crossover.router.proxy import Router, RouterSettings
from crossover.router.state import RouterState

log = logging.getLogger(__name__)

COMPLETIONS = ("/v1/chat/completions", "/v1/completions")
Hook = Callable[[web.Application], Awaitable[None]]
# Client gone -> its handler is cancelled, so the upstream request is cancelled too (aiohttp's default keeps it).
LAG_TASK = web.AppKey("loop_lag_task", asyncio.Task[None])
RUNNER_OPTIONS = {"handler_cancellation": True, "access_log": None}


def build_router_app(
    state: RouterState,
    settings: RouterSettings,
    metrics: RouterMetrics | None = None,
    on_startup: Sequence[Hook] = (),
    on_cleanup: Sequence[Hook] = (),
) -> web.Application:
    metrics = metrics or RouterMetrics()
    router = Router(state, settings, metrics)
    created = int(time.time())

    async def handle(request: web.Request) -> web.StreamResponse:
        """The proxy; anything unexpected is a 500 in OpenAI's shape, logged (a route, not a middleware: a
        middleware layer costs every request a coroutine and a closure)."""
        try:
            return await router.handle(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return router.local_error(500, "The router failed unexpectedly; see its log.", "internal_error")

    async def not_found(request: web.Request) -> web.Response:
        return router.local_error(404, f"{request.method} {request.path}: no such endpoint", "not_found")

    async def method_not_allowed(request: web.Request) -> web.Response:
        allowed = "POST" if request.path in COMPLETIONS else "GET, HEAD"
        return router.local_error(
            405,
            f"{request.method} {request.path}: method not allowed",
            "method_not_allowed",
            headers={"Allow": allowed},
        )

    # the body cap is enforced by the handler while reading (413 in OpenAI's shape); aiohttp's own must not be lower
    app = web.Application(client_max_size=settings.max_body_bytes + 1)

    async def start(_: web.Application) -> None:
        await router.start()
        app[LAG_TASK] = asyncio.create_task(_sample_loop_lag(metrics))

    async def drain(_: web.Application) -> None:
        state.draining = True  # readiness fails (if serve() did not already); aiohttp then waits for handlers

    async def close(_: web.Application) -> None:
        app[LAG_TASK].cancel()
        await router.close()

    app.on_startup.append(start)
    app.on_startup.extend(on_startup)
    app.on_shutdown.append(drain)
    app.on_cleanup.extend(on_cleanup)
    app.on_cleanup.append(close)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if not state.ready:
            return web.Response(status=503, text="draining" if state.draining else "waiting for the routing policy")
        return web.Response(text="ok")

    def model_entry(name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": state.model_created or created, "owned_by": "crossover"}

    async def models(_: web.Request) -> web.Response:
        names = [state.served_model] if state.served_model else []
        return web.json_response({"object": "list", "data": [model_entry(n) for n in names]}, dumps=_dumps)

    async def model(request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name != state.served_model:
            return router.local_error(404, f"The model `{name}` does not exist.", "model_not_found", "model")
        return web.json_response(model_entry(name), dumps=_dumps)

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.exposition()), headers={"Content-Type": CONTENT_TYPE_LATEST})

    for path in COMPLETIONS:
        app.router.add_post(path, handle)
        app.router.add_route("*", path, method_not_allowed)  # every other method: 405 in OpenAI's shape
    for path, get in (("/v1/models", models), ("/v1/models/{model:.+}", model), ("/healthz", healthz),
                      ("/readyz", readyz), ("/metrics", scrape)):  # fmt: skip
        app.router.add_get(path, get)
        app.router.add_route("*", path, method_not_allowed)
    app.router.add_route("*", "/{tail:.*}", not_found)  # last: any other path is a 404 in OpenAI's shape
    return app


async def _sample_loop_lag(metrics: RouterMetrics, every: float = 0.25) -> None:
    """Event-loop lag: a timer due in `every` seconds runs late by exactly the time the loop was busy elsewhere."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every
        await asyncio.sleep(every)
        metrics.loop_lag.observe(max(0.0, loop.time() - due))


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def serve(
    app: web.Application,
    state: RouterState,
    host: str,
    port: int,
    drain_delay_seconds: float,
    drain_seconds: float,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`), then drain without losing a request: readiness fails at once, the
    listener stays open `drain_delay_seconds` (endpoints take a while to stop sending new connections here: the
    preStop window), then it closes and in-flight requests get `drain_seconds` to finish."""
    runner = web.AppRunner(app, shutdown_timeout=drain_seconds, **RUNNER_OPTIONS)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    await site.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        state.draining = True
        log.info("draining: readiness fails now, listener open for %g s more", drain_delay_seconds)
        await asyncio.sleep(drain_delay_seconds)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stop listening, wait for in-flight handlers (up to drain_seconds), close
