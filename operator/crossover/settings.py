"""Operator settings: flags override environment variables (which the Helm chart sets), which override defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from crossover.reconcile.children import RouterSettings

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
DEFAULT_ROUTER_IMAGE = "ghcr.io/crossover-dev/crossover:0.1.0"


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    interval_seconds: float = 30.0
    rate_window_seconds: int = 120
    metrics_listen: str = "0.0.0.0:9102"
    router: RouterSettings = field(default_factory=lambda: RouterSettings(image=DEFAULT_ROUTER_IMAGE))

    @classmethod
    def from_env(cls) -> OperatorConfig:
        env = os.environ
        return cls(
            prometheus_url=env.get("CROSSOVER_PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL),
            interval_seconds=float(env.get("CROSSOVER_RECONCILE_INTERVAL_SECONDS", "30")),
            rate_window_seconds=int(env.get("CROSSOVER_RATE_WINDOW_SECONDS", "120")),
            metrics_listen=env.get("CROSSOVER_METRICS_LISTEN", "0.0.0.0:9102"),
            router=RouterSettings(
                image=env.get("CROSSOVER_ROUTER_IMAGE", DEFAULT_ROUTER_IMAGE),
                replicas=int(env.get("CROSSOVER_ROUTER_REPLICAS", "2")),
                cluster_role=env.get("CROSSOVER_ROUTER_CLUSTER_ROLE", "crossover-router"),
            ),
        )
