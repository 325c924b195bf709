"""Operator settings: flags override environment variables (which the Helm chart sets), which override defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from crossover.contracts import (
    ENV_API_BASE_URL_ALLOWLIST,
    ENV_GPU_PRODUCT_LABEL,
    ENV_METRICS_LISTEN,
    ENV_PROMETHEUS_URL,
    ENV_RATE_WINDOW,
    ENV_RECONCILE_INTERVAL,
    ENV_RECONCILE_STUCK,
    ENV_ROUTER_CLUSTER_ROLE,
    ENV_ROUTER_IMAGE,
    ENV_ROUTER_REPLICAS,
)
from crossover.reconcile.children import EngineSettings, RouterPodSettings
from crossover.sharding import Shard

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
DEFAULT_ROUTER_IMAGE = "ghcr.io/crossover-dev/crossover:0.1.0"


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    interval_seconds: float = 30.0
    rate_window_seconds: int = 120
    metrics_listen: str = "127.0.0.1:9102"  # local runs stay on loopback; the chart sets 0.0.0.0
    stuck_after_seconds: float = 300.0  # liveness fails once one reconcile has run this long
    router: RouterPodSettings = field(default_factory=lambda: RouterPodSettings(image=DEFAULT_ROUTER_IMAGE))
    engine: EngineSettings = field(default_factory=EngineSettings)
    shard: Shard = field(default_factory=Shard)  # --shard i/n; the default 0/1 owns everything

    @classmethod
    def from_env(cls) -> OperatorConfig:
        env = os.environ
        return cls(
            prometheus_url=env.get(ENV_PROMETHEUS_URL, DEFAULT_PROMETHEUS_URL),
            interval_seconds=float(env.get(ENV_RECONCILE_INTERVAL, "30")),
            rate_window_seconds=int(env.get(ENV_RATE_WINDOW, "120")),
            metrics_listen=env.get(ENV_METRICS_LISTEN, "127.0.0.1:9102"),
            stuck_after_seconds=float(env.get(ENV_RECONCILE_STUCK, "300")),
            router=RouterPodSettings(
                image=env.get(ENV_ROUTER_IMAGE, DEFAULT_ROUTER_IMAGE),
                replicas=int(env.get(ENV_ROUTER_REPLICAS, "2")),
                cluster_role=env.get(ENV_ROUTER_CLUSTER_ROLE, "crossover-router"),
                api_base_url_allowlist=tuple(
                    url.strip() for url in env.get(ENV_API_BASE_URL_ALLOWLIST, "").split(",") if url.strip()
                ),
            ),
            engine=EngineSettings(gpu_product_label=env.get(ENV_GPU_PRODUCT_LABEL, EngineSettings.gpu_product_label)),
        )
