"""The router's Prometheus metrics. The operator reads `crossover_router_tokens_total` (demand before the split),
`crossover_router_api_spend_dollars_total` and throttled API requests from here, so names and labels are an API."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SELF = "self"
API = "api"

# outcomes
OK = "ok"
ERROR = "error"  # upstream failed, after retries, or mid-stream
THROTTLED = "throttled"  # the API answered 429
REJECTED = "rejected"  # the router answered 429/503 itself (no capacity and no spill allowed)
CLIENT_CLOSED = "client_closed"


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crossover_router_requests", "Requests by backend and outcome", ["backend", "outcome"], registry=r
        )
        self.tokens = Counter(
            "crossover_router_tokens",
            "Tokens by direction, backend and outcome (from upstream usage)",
            ["direction", "backend", "outcome"],
            registry=r,
        )
        self.api_spend = Counter("crossover_router_api_spend_dollars", "Dollars spent on the hosted API", registry=r)
        self.inflight = Gauge("crossover_router_inflight", "Requests in flight by backend", ["backend"], registry=r)
        self.added_latency = Histogram(
            "crossover_router_added_latency_seconds",
            "Router overhead per request: arrival to upstream request sent, plus upstream headers to first byte out",
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
        )
        for backend in (SELF, API):
            self.inflight.labels(backend)
            for outcome in (OK, ERROR):
                self.requests.labels(backend, outcome)

    def count(self, backend: str, outcome: str, prompt: int | None, completion: int | None) -> None:
        self.requests.labels(backend, outcome).inc()
        if prompt:
            self.tokens.labels("input", backend, outcome).inc(prompt)
        if completion:
            self.tokens.labels("output", backend, outcome).inc(completion)

    def spend(self, dollars: Decimal) -> None:
        if dollars > 0:
            self.api_spend.inc(float(dollars))  # Prometheus counters are floats; the sum is computed in Decimal
