"""The operator's own Prometheus metrics: what it decided, how long reconciles take, what failed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from crossover.contracts import BASIS_LABEL, COST_DOLLARS, Basis

REGISTRY = CollectorRegistry()


class LedgerCollector(Collector):
    """`crossover_cost_dollars_total{namespace, name, basis}`: each resource's month-to-date ledger as status has it.

    Values come from status (which is derived from counters and survives restarts), not from increments in this
    process, so a restarted operator exposes the same figures at once. They restart from zero each month, which
    Prometheus' increase() and rate() read as a counter reset. A basis that is unknown is not exposed (never 0)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], dict[Basis, Decimal]] = {}

    def set(self, namespace: str, name: str, values: dict[Basis, Decimal]) -> None:
        with self._lock:
            self._values[(namespace, name)] = dict(values)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._values.pop((namespace, name), None)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            COST_DOLLARS,
            "Month-to-date dollars per InferenceDeployment: actual spend, and the same tokens at API prices",
            labels=["namespace", "name", BASIS_LABEL],
        )
        with self._lock:
            for (namespace, name), values in sorted(self._values.items()):
                for basis, dollars in values.items():
                    family.add_metric([namespace, name, basis.value], float(dollars))  # exposition is float
        yield family


LEDGER = LedgerCollector()
REGISTRY.register(LEDGER)

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

# per InferenceDeployment, for the chart's dashboard (labels `namespace` and `name` are the resource's: scrape the
# operator with honor_labels, as the chart's ServiceMonitor does, or Prometheus renames them exported_*)
REPLICAS = Gauge(
    "crossover_operator_replicas",
    "Engine replicas by state: desired, ready, warming, pending (unschedulable)",
    ["namespace", "name", "state"],
    registry=REGISTRY,
)
BREAK_EVEN_TPS = Gauge(
    "crossover_operator_break_even_tokens_per_second",
    "Demand (input + output tok/s) above which self-hosting is cheaper",
    ["namespace", "name"],
    registry=REGISTRY,
)
COST_PER_HOUR = Gauge(
    "crossover_operator_cost_per_hour_dollars",
    "What the current mix costs per hour, by side",
    ["namespace", "name", "side"],
    registry=REGISTRY,
)
ACTIONS = Counter(
    "crossover_operator_actions",
    "Decisions per InferenceDeployment, by action and reason (the dashboard's annotations)",
    ["namespace", "name", "action", "reason"],
    registry=REGISTRY,
)


def serve(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)


# the engine signals each InferenceDeployment's status shows; a series is removed while its signal is unknown
SIGNALS = Gauge(
    "crossover_operator_engine_signal",
    "Engine signals as last read: gpuUtilization (percent), requestsWaiting, kvCacheUsage (0..1), ttftP95Seconds",
    ["namespace", "name", "signal"],
    registry=REGISTRY,
)
CAPACITY_IN_USE = Gauge(
    "crossover_operator_capacity_tokens_per_second",
    "Per-replica capacity decide() plans with, by phase (prefill, decode) and source (Declared, Observed)",
    ["namespace", "name", "phase", "source"],
    registry=REGISTRY,
)
COLD_START_SECONDS = Gauge(
    "crossover_operator_cold_start_seconds",
    "Cold start decide() charges a new replica (the larger of declared and observed)",
    ["namespace", "name"],
    registry=REGISTRY,
)
