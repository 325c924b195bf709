"""`crossover router`: the per-InferenceDeployment spill router (the operator deploys it; runnable locally too)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from crossover.contracts import ENV_API_KEY, ENV_ROUTER_MAX_BODY_BYTES
from crossover.router.workers import WORKER_FLAG, worker_share


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "router",
        help="run the OpenAI-compatible spill router for one InferenceDeployment",
        description=(
            "Serve /v1/chat/completions and /v1/completions, sending each request to the least-loaded Ready engine "
            "pod or to the hosted API, following the spill fraction and mode the operator writes to the "
            "InferenceDeployment's status. With --name and --namespace it watches Kubernetes; with --spec-file "
            f"it runs from a manifest and --engine-url flags. The API key comes from ${ENV_API_KEY} only."
        ),
    )
    parser.add_argument("--name", help="InferenceDeployment to serve (Kubernetes mode)")
    parser.add_argument("--namespace", default="default", help="its namespace")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    parser.add_argument("--spec-file", type=Path, help="InferenceDeployment manifest (static mode)")
    parser.add_argument("--engine-url", action="append", default=[], help="engine base URL (static; repeatable)")
    parser.add_argument("--spill-fraction", help="static spill fraction 0..1 (default: the manifest's status, else 0)")
    parser.add_argument("--mode", help="static policy mode override (CostOptimized, SelfHostedOnly, APIOnly, ...)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on")
    parser.add_argument("--max-inflight-per-pod", type=int, default=64, help="above this, spill (or queue)")
    parser.add_argument("--queue-timeout", type=float, default=30.0, help="seconds a request may wait for a pod")
    parser.add_argument("--max-queue", type=int, default=1024, help="requests that may wait at once; more get 429")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help=f"largest request body (default: ${ENV_ROUTER_MAX_BODY_BYTES}, else 1/32 of the memory limit, 1..32 MiB)",
    )
    parser.add_argument("--body-read-timeout", type=float, default=30.0, help="seconds for a request body to arrive")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to connect upstream")
    parser.add_argument(
        "--first-byte-timeout",
        type=float,
        default=300.0,
        help="seconds for upstream headers, a stream's first event",
    )
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="longest upstream silence mid-stream (s)")
    parser.add_argument("--backoff-ceiling", type=float, default=300.0, help="longest API back-off after a 429 (s)")
    parser.add_argument(
        "--drain-delay-seconds",
        type=float,
        default=5.0,
        help="on SIGTERM, fail readiness but keep accepting this long (endpoints propagate: the preStop window)",
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=30.0, help="then wait this long for in-flight requests to finish"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the one port (SO_REUSEPORT); each keeps its own exact spill share and 1/N of the "
        "per-pod and queue limits",
    )
    parser.add_argument(WORKER_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (uvloop, the default, measured no slower; see docs/router.md)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(func=run)


def _max_body(args: argparse.Namespace) -> int | None:
    if args.max_body_bytes is not None:
        return int(args.max_body_bytes)
    value = os.environ.get(ENV_ROUTER_MAX_BODY_BYTES)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${ENV_ROUTER_MAX_BODY_BYTES} must be a positive number of bytes, got {value!r}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from aiohttp import web

    from crossover.manifest import ManifestError, load_inference_deployment
    from crossover.reconcile.routing import routing_status
    from crossover.router.app import build_router_app, serve
    from crossover.router.discovery import KubernetesDiscovery, apply_resource
    from crossover.router.proxy import RouterSettings, default_max_body_bytes
    from crossover.router.state import RouterState

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"crossover router: --listen wants HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    if bool(args.name) == bool(args.spec_file):
        print("crossover router: give either --name (Kubernetes) or --spec-file (static)", file=sys.stderr)
        return 2
    try:
        max_body = _max_body(args)
    except ValueError as error:
        print(f"crossover router: {error}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"crossover router: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.workers > 1 and args.worker_index is None:
        from crossover.router.workers import supervise

        return supervise(sys.argv[1:], args.workers)
    share = args.workers  # a worker keeps its part of the limits the router as a whole keeps
    state = RouterState()
    settings = RouterSettings(
        max_inflight_per_pod=worker_share(args.max_inflight_per_pod, share),
        queue_timeout_seconds=args.queue_timeout,
        max_queue=worker_share(args.max_queue, share),
        api_key=os.environ.get(ENV_API_KEY) or None,
        max_body_bytes=max_body if max_body is not None else default_max_body_bytes(),
        body_read_timeout_seconds=args.body_read_timeout,
        connect_timeout_seconds=args.connect_timeout,
        first_byte_timeout_seconds=args.first_byte_timeout,
        idle_timeout_seconds=args.idle_timeout,
        backoff_ceiling_seconds=args.backoff_ceiling,
    )
    if args.spec_file:
        try:
            manifest = load_inference_deployment(args.spec_file)
        except ManifestError as error:
            print(f"crossover router: {error}", file=sys.stderr)
            return 2
        published = manifest.status.routing if manifest.status is not None else None
        try:
            fraction = (
                Decimal(args.spill_fraction)
                if args.spill_fraction is not None
                else (published.spill_fraction if published is not None else Decimal(0))
            )
        except InvalidOperation:
            fraction = Decimal("NaN")
        if not fraction.is_finite() or not Decimal(0) <= fraction <= Decimal(1):
            print(
                f"crossover router: --spill-fraction {args.spill_fraction!r} is not a number in 0..1", file=sys.stderr
            )
            return 2
        # the same status.routing the operator would publish for this manifest: the router reads only that
        routing = routing_status(
            manifest.spec,
            manifest.name,
            fraction,
            api_available=published.api_available if published is not None else True,
            generation=None,
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
        if args.mode:
            routing["mode"] = args.mode
        apply_resource(state, {"status": {"routing": routing}})
        state.set_endpoints(set(args.engine_url))
        app = build_router_app(state, settings)
    else:
        discovery = KubernetesDiscovery(state, args.name, args.namespace, args.kubeconfig)

        async def watch(_: web.Application) -> None:
            discovery.start(asyncio.get_running_loop())

        async def unwatch(_: web.Application) -> None:
            discovery.stop()

        app = build_router_app(state, settings, on_startup=[watch], on_cleanup=[unwatch])
    main = serve(app, state, host, int(port), args.drain_delay_seconds, args.drain_seconds, reuse_port=share > 1)
    if args.event_loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)
    return 0
