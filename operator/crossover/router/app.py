"""The router's aiohttp application: OpenAI-compatible endpoints, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from crossover.router.metrics import RouterMetrics
from crossover.router.proxy import Router, RouterSettings
from crossover.router.state import RouterState

Hook = Callable[[web.Application], Awaitable[None]]


def build_router_app(
    state: RouterState,
    settings: RouterSettings,
    metrics: RouterMetrics | None = None,
    on_startup: Sequence[Hook] = (),
    on_cleanup: Sequence[Hook] = (),
) -> web.Application:
    metrics = metrics or RouterMetrics()
    router = Router(state, settings, metrics)
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def start(_: web.Application) -> None:
        await router.start()

    async def drain(_: web.Application) -> None:
        state.draining = True  # readiness fails at once; aiohttp then stops accepting and waits for handlers

    async def close(_: web.Application) -> None:
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

    async def models(_: web.Request) -> web.Response:
        names = [state.served_model] if state.served_model else []
        return web.json_response(
            {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "crossover"} for n in names]}
        )

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_post("/v1/chat/completions", router.handle)
    app.router.add_post("/v1/completions", router.handle)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app
