"""The simulated cluster and router, step by step (the policies that drive it are in `policies`).

One step per control interval. At each step the controller sees demand as Prometheus would show it (the mean over
a rate window that ends one scrape interval ago), the policy picks replicas, new replicas are billed at once and
serve `coldStartSeconds` later, removed ones stop costing at once (warming ones go first). Serving follows the
router: ready replicas take demand up to the target utilisation of their two-dimensional capacity
(`in/prefill + out/decode`); the rest goes to the API if the policy spills, else it is late. The same accounting
applies to every policy, so costs compare; late tokens are reported, and priced at API rates in the "effective"
cost the offline optimum bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from costpolicy.pricing import FloatCapacity, api_bill, replica_bill
from costpolicy.spec import CostSpec
from crossover.sim.traces import Trace

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # a month boundary: budget pacing starts fresh


def to_decimal(x: float) -> Decimal:
    """A simulated rate or token count as a Decimal, to the micro-token (the simulator runs in floats)."""
    return Decimal(f"{x:.6f}")


@dataclass(frozen=True)
class SimConfig:
    control_interval_s: float = 30.0
    scrape_interval_s: float = 15.0
    rate_window_s: float = 120.0
    # Before t = 0 the end of the trace plays for this long, unrecorded (as if the trace wrapped around: yesterday
    # evening before this morning): the operator was running before the trace began, as the static fleet was, so
    # no policy starts from a cold, empty cluster unless asked to (--warmup 0).
    warmup_s: float = 1800.0
    # How long an engine really takes to turn ready; None: what the manifest declares (coldStartSeconds). The
    # policy always reasons with the declared figure, as the operator does; this is the engines' behaviour, e.g. a
    # lab replay's measured warm-up, so the model matches the cluster it is compared with.
    engine_cold_start_s: float | None = None

    def cold_start(self, spec: CostSpec) -> float:
        return float(spec.cold_start_seconds) if self.engine_cold_start_s is None else self.engine_cold_start_s


@dataclass(frozen=True)
class Step:
    """One row of decisions.csv (rates in tokens/s over the step) and the step's costs."""

    window_start_s: float
    window_seconds: float
    demand_input_tps: float
    demand_output_tps: float
    replicas_billed: int
    replicas_ready: int
    self_input_tps: float
    self_output_tps: float
    api_input_tps: float
    api_output_tps: float
    late_input_tps: float
    late_output_tps: float
    cost_replicas: Decimal
    cost_overhead: Decimal
    cost_api: Decimal
    reason: str = ""


@dataclass(frozen=True)
class View:
    """What a policy sees at one control step."""

    t: float
    observed: tuple[float, float] | None  # (input, output) tokens/s from "Prometheus"; None: no data yet
    current: int  # the replica count asked for now (the Deployment's spec.replicas)
    ready: int
    warming: int
    api_spend: Decimal
    spill_fraction: Decimal


class ScalingPolicy(Protocol):
    name: str
    spills: bool

    def initial(self, spec: CostSpec) -> int: ...

    def decide(self, view: View) -> tuple[int, str]: ...


@dataclass
class Result:
    policy: str
    steps: list[Step]
    scale_events: int

    @property
    def replicas(self) -> Decimal:
        return sum((s.cost_replicas for s in self.steps), Decimal(0))

    @property
    def overhead(self) -> Decimal:
        return sum((s.cost_overhead for s in self.steps), Decimal(0))

    @property
    def api(self) -> Decimal:
        return sum((s.cost_api for s in self.steps), Decimal(0))

    @property
    def total(self) -> Decimal:
        return self.replicas + self.overhead + self.api

    def tokens(self, kind: str) -> float:
        """Tokens over the run: kind is demand, self, api or late."""
        total = 0.0
        for s in self.steps:
            rate: float = getattr(s, f"{kind}_input_tps") + getattr(s, f"{kind}_output_tps")
            total += rate * s.window_seconds
        return total

    @property
    def late_fraction(self) -> float:
        demand = self.tokens("demand")
        return self.tokens("late") / demand if demand else 0.0

    def effective(self, spec: CostSpec) -> Decimal:
        """Spend plus late tokens at API prices: what serving everything would have cost at least."""
        late = sum(
            (
                api_bill(
                    spec.api_pricing,
                    to_decimal(s.late_input_tps * s.window_seconds),
                    to_decimal(s.late_output_tps * s.window_seconds),
                )
                for s in self.steps
            ),
            Decimal(0),
        )
        return self.total + late


@dataclass
class Demands:
    """The trace on the control grid: per-step rates, and what a Prometheus-backed controller sees."""

    trace: Trace
    config: SimConfig
    rates: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        dt = self.config.control_interval_s
        steps = math.ceil(self.trace.duration_s / dt)
        self.rates = [self._mean(k * dt, (k + 1) * dt) for k in range(steps)]

    def _mean(self, start: float, end: float) -> tuple[float, float]:
        """Exact time-weighted mean over [start, end) across trace windows."""
        total_in = total_out = 0.0
        for w in self.trace.windows:
            lo, hi = max(start, w.start_s), min(end, w.start_s + w.seconds)
            if hi > lo:
                total_in += w.input_tps * (hi - lo)
                total_out += w.output_tps * (hi - lo)
        span = end - start
        return total_in / span, total_out / span

    def rate(self, k: int) -> tuple[float, float]:
        """Step k's demand; during the warm-up (k < 0) the trace's end, wrapped around."""
        return self.rates[k % len(self.rates)] if self.rates else (0.0, 0.0)

    def observed(self, k: int) -> tuple[float, float] | None:
        """Mean over the rate window ending one scrape interval before step k starts; None before any data."""
        dt = self.config.control_interval_s
        end = k * dt - self.config.scrape_interval_s
        history = -self.config.warmup_s
        if end <= history:
            return None
        start = max(history, end - self.config.rate_window_s)
        first, last = math.floor(start / dt), max(math.floor(start / dt), math.ceil(end / dt) - 1)
        total_in = total_out = weight = 0.0
        for j in range(first, last + 1):
            lo, hi = max(start, j * dt), min(end, (j + 1) * dt)
            if hi > lo and j < len(self.rates):
                rate_in, rate_out = self.rate(j)
                total_in += rate_in * (hi - lo)
                total_out += rate_out * (hi - lo)
                weight += hi - lo
        return (total_in / weight, total_out / weight) if weight else None


def serve(spec: CostSpec, ready: int, input_tps: float, output_tps: float) -> float:
    """Share of demand the ready replicas take, up to the target utilisation (the router's fast path)."""
    capacity = FloatCapacity.of(spec)
    return capacity.served_fraction(capacity.busy_replicas(input_tps, output_tps), ready)


def step_costs(
    spec: CostSpec, billed: int, api_in: float, api_out: float, seconds: float
) -> tuple[Decimal, Decimal, Decimal]:
    """(replicas, overhead, API) dollars of one step: billed replicas, and the tokens spilled at these rates."""
    replicas, overhead = replica_bill(spec, billed, to_decimal(seconds))
    api = api_bill(spec.api_pricing, to_decimal(api_in * seconds), to_decimal(api_out * seconds))
    return replicas, overhead, api


def simulate(spec: CostSpec, demands: Demands, policy: ScalingPolicy) -> Result:
    dt = demands.config.control_interval_s
    cold = demands.config.cold_start(spec)
    ready_at: list[float] = [-math.inf] * policy.initial(spec)  # initial replicas are up already
    current = len(ready_at)
    steps: list[Step] = []
    events = 0
    spend = Decimal(0)
    spill = Decimal(0)
    warm = round(demands.config.warmup_s / dt)
    for k in range(-warm, len(demands.rates)):
        din, dout = demands.rate(k)
        t = k * dt
        ready = sum(1 for r in ready_at if r <= t)
        view = View(t, demands.observed(k), current, ready, len(ready_at) - ready, spend, spill)
        wanted, reason = policy.decide(view)
        wanted = max(0, min(spec.replicas.max, wanted))
        if wanted != current:
            events += k >= 0
            current = wanted
        while len(ready_at) < current:
            ready_at.append(t + cold)
        if len(ready_at) > current:
            ready_at.sort()  # warming ones (latest ready time) go first
            del ready_at[current:]
        ready = sum(1 for r in ready_at if r <= t)
        share = serve(spec, ready, din, dout)
        rest_in, rest_out = din * (1 - share), dout * (1 - share)
        api_in, api_out = (rest_in, rest_out) if policy.spills else (0.0, 0.0)
        late_in, late_out = (0.0, 0.0) if policy.spills else (rest_in, rest_out)
        cost_replicas, cost_overhead, cost_api = step_costs(spec, len(ready_at), api_in, api_out, dt)
        if k < 0:  # warm-up: the policy settles, nothing is recorded or paid
            continue
        spend += cost_api
        total = din + dout
        spill = to_decimal((api_in + api_out) / total) if total > 0 else Decimal(0)
        steps.append(
            Step(
                t, dt, din, dout, len(ready_at), ready, din * share, dout * share, api_in, api_out, late_in, late_out,
                cost_replicas, cost_overhead, cost_api, reason,
            )
        )  # fmt: skip
    return Result(policy.name, steps, events)
