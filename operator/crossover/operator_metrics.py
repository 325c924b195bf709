"""The operator's own Prometheus metrics: what it decided, how long reconciles take, what failed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

DECISIONS = Counter(
    "crossover_operator_decisions", "Decisions taken, by reason and action", ["reason", "action"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "crossover_operator_reconcile_seconds",
    "Wall time of one reconcile",
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter("crossover_operator_reconcile_errors", "Reconciles that raised", ["kind"], registry=REGISTRY)
DESIRED_REPLICAS = Gauge(
    "crossover_operator_desired_replicas", "Engine replicas decided", ["namespace", "name"], registry=REGISTRY
)
SPILL_FRACTION = Gauge(
    "crossover_operator_spill_fraction", "Share of demand routed to the API", ["namespace", "name"], registry=REGISTRY
)
COST_PER_MTOK = Gauge(
    "crossover_operator_cost_per_million_tokens",
    "Live $/Mtok by side",
    ["namespace", "name", "side"],
    registry=REGISTRY,
)


def serve(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)
