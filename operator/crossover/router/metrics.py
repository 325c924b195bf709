"""The router's Prometheus metrics. The operator reads the token counter (demand before the split), the API spend
and throttled API requests from here, so names and label values are a contract: they live in crossover.contracts."""

from __future__ import annotations

import os
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from crossover.contracts import (
    BACKEND_LABEL,
    CODE_LABEL,
    DIRECTION_LABEL,
    ENV_PROMETHEUS_MULTIPROC_DIR,
    OUTCOME_LABEL,
    ROUTER_ADDED_LATENCY,
    ROUTER_API_CACHED_INPUT,
    ROUTER_API_SPEND,
    ROUTER_INFLIGHT,
    ROUTER_LOCAL_ERRORS,
    ROUTER_LOOP_LAG,
    ROUTER_REQUESTS,
    ROUTER_TOKENS,
    STATUS_LABEL,
    Backend,
    Direction,
    Outcome,
)

# short names for the request path
SELF, API = Backend.SELF, Backend.API
OK, ERROR, THROTTLED, REJECTED, CLIENT_CLOSED = (
    Outcome.OK,
    Outcome.ERROR,
    Outcome.THROTTLED,
    Outcome.REJECTED,
    Outcome.CLIENT_CLOSED,
)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            ROUTER_REQUESTS, "Requests by backend and outcome", [BACKEND_LABEL, OUTCOME_LABEL], registry=r
        )
        self.tokens = Counter(
            ROUTER_TOKENS,
            "Tokens by direction, backend and outcome (upstream usage; estimated when a response ended without it)",
            [DIRECTION_LABEL, BACKEND_LABEL, OUTCOME_LABEL],
            registry=r,
        )
        self.local_errors = Counter(
            ROUTER_LOCAL_ERRORS,
            "Errors the router answered itself (bad request, unknown model, body too large, queue full, ...)",
            [STATUS_LABEL, CODE_LABEL],
            registry=r,
        )
        self.api_spend = Counter(ROUTER_API_SPEND, "Dollars spent on the hosted API", registry=r)
        self.api_cached_input = Counter(
            ROUTER_API_CACHED_INPUT,
            "Input tokens the hosted API reported as cached (usage.prompt_tokens_details.cached_tokens)",
            registry=r,
        )
        self.inflight = Gauge(
            ROUTER_INFLIGHT, "Requests in flight by backend", [BACKEND_LABEL], registry=r, multiprocess_mode="livesum"
        )
        self.added_latency = Histogram(
            ROUTER_ADDED_LATENCY,
            "Router overhead per request: arrival to upstream request sent, plus upstream headers to first byte out",
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
        )
        self.loop_lag = Histogram(
            ROUTER_LOOP_LAG,
            "How late the event loop ran a timer (sampled 4 times a second): the queueing every request meets in the "
            "router before its handler starts, which the added-latency histogram cannot see",
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self._children: dict[tuple[str, str], tuple[Counter, Counter, Counter]] = {}
        for backend in (SELF, API):
            self.inflight.labels(backend)
            for outcome in (OK, ERROR):
                self.requests.labels(backend, outcome)

    def exposition(self) -> CollectorRegistry:
        """What /metrics shows: this process's registry; with several workers (`--workers`, prometheus_client's
        multiprocess mode) the sum over all of them, whichever worker the scrape reaches."""
        if not os.environ.get(ENV_PROMETHEUS_MULTIPROC_DIR):
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry

    def count(self, backend: str, outcome: str, prompt: int | None, completion: int | None) -> None:
        children = self._children.get((backend, outcome))
        if children is None:  # labels() takes a lock and builds a key every call: once per label set is enough
            children = self._children[(backend, outcome)] = (
                self.requests.labels(backend, outcome),
                self.tokens.labels(Direction.INPUT, backend, outcome),
                self.tokens.labels(Direction.OUTPUT, backend, outcome),
            )
        requests, tokens_in, tokens_out = children
        requests.inc()
        if prompt:
            tokens_in.inc(prompt)
        if completion:
            tokens_out.inc(completion)

    def cached_input(self, tokens: int) -> None:
        if tokens > 0:
            self.api_cached_input.inc(tokens)

    def spend(self, dollars: Decimal) -> None:
        if dollars > 0:
            self.api_spend.inc(float(dollars))  # Prometheus counters are floats; the sum is computed in Decimal
