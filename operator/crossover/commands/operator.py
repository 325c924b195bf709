"""`crossover operator`: run the kopf operator."""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from dataclasses import replace

from crossover.contracts import ENV_API_BASE_URL_ALLOWLIST, ENV_PEERING
from crossover.reconcile.children import EngineSettings
from crossover.settings import OperatorConfig
from crossover.sharding import Shard


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


log = logging.getLogger("crossover.operator")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the operator (watches InferenceDeployments)",
        description=(
            "Run the crossover operator: every interval, for each InferenceDeployment, read demand from "
            "Prometheus, decide replicas and spill, scale the engine and write status. Settings come from "
            "flags, else CROSSOVER_* environment variables (set by the Helm chart), else defaults."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL (env CROSSOVER_PROMETHEUS_URL)")
    parser.add_argument(
        "--interval", type=float, help="seconds between reconciles (env CROSSOVER_RECONCILE_INTERVAL_SECONDS)"
    )
    parser.add_argument(
        "--rate-window", type=int, help="PromQL rate window in seconds (env CROSSOVER_RATE_WINDOW_SECONDS)"
    )
    parser.add_argument("--metrics-listen", help="HOST:PORT for the operator's /metrics (env CROSSOVER_METRICS_LISTEN)")
    parser.add_argument(
        "--gpu-product-label",
        help="node label matched against spec.engine.gpu.type (env CROSSOVER_GPU_PRODUCT_LABEL; "
        "default nvidia.com/gpu.product, as GPU feature discovery sets it)",
    )
    parser.add_argument(
        "--liveness",
        default="http://127.0.0.1:8080/healthz",
        help="liveness endpoint URL (default on loopback; the chart serves it on 0.0.0.0 for the kubelet)",
    )
    parser.add_argument(
        "--peering",
        default=os.environ.get(ENV_PEERING) or None,
        help=(
            "kopf peering name, for several operator replicas of which exactly one is active (env "
            f"{ENV_PEERING}; the chart sets it when replicaCount > 1; sharded: NAME-shard-I, one peering per shard). "
            "Default: none, a standalone operator"
        ),
    )
    parser.add_argument(
        "--allow-api-base-url",
        action="append",
        default=[],
        metavar="URL",
        help=(
            "only let routers call APIs under this base URL (scheme, host, port, path prefix; repeatable; env "
            f"{ENV_API_BASE_URL_ALLOWLIST}, comma-separated). Default: any"
        ),
    )
    parser.add_argument("--standalone", action="store_true", help="ignore --peering: the only operator")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=Shard(),
        metavar="I/N",
        help="reconcile only shard I of N: resources whose sha256(namespace/name) mod N is I (default 0/1: all)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        help="peering priority, the highest live one is active (default: by start time, the earliest "
        "first, so a replica that joins never takes over from one already working)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=run)


def _check_peering(name: str, namespaces: list[str]) -> None:
    """Say at WARNING what is missing for peering, and what to do, instead of kopf pausing without a word."""
    from crossover.main import load_kube_config
    from crossover.peering import peering_problems

    try:
        problems = peering_problems(load_kube_config(), name, namespaces)
    except Exception as error:  # no cluster reachable yet: kopf will say so itself
        log.warning("peering %r: could not check the peering CRD and object (%s)", name, type(error).__name__)
        return
    for problem in problems:
        log.warning("peering %r: %s", name, problem)


def run(args: argparse.Namespace) -> int:
    import kopf

    from crossover.main import build_registry
    from crossover.memory import keep_trimmed
    from crossover.peering import TIE_BREAKS, seniority_priority

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = OperatorConfig.from_env()
    overrides = {
        "prometheus_url": args.prometheus_url,
        "interval_seconds": args.interval,
        "rate_window_seconds": args.rate_window,
        "metrics_listen": args.metrics_listen,
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None}, shard=args.shard)
    if args.gpu_product_label:
        cfg = replace(cfg, engine=EngineSettings(gpu_product_label=args.gpu_product_label))
    if args.allow_api_base_url:
        cfg = replace(cfg, router=replace(cfg.router, api_base_url_allowlist=tuple(args.allow_api_base_url)))
    peering = None if args.standalone or not args.peering else args.peering
    if peering is not None and args.shard.sharded:
        peering = f"{peering}-shard-{args.shard.index}"
    if peering is None:
        log.info("standalone: no peering configured, this operator is the only one (--peering NAME for replicas)")
    else:
        _check_peering(peering, args.namespace)
    keep_trimmed()
    tie_break = random.randrange(TIE_BREAKS)
    kopf.run(
        registry=build_registry(cfg),
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=peering is None,
        peering_name=peering,
        priority=args.priority if args.priority is not None else seniority_priority(time.time(), tie_break),
        liveness_endpoint=args.liveness,
    )
    return 0
