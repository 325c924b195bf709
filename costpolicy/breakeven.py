"""Break-even: the demand above which paying for replicas beats the API, replica by replica.

With fixed overhead the first replicas are special: self-hosting wins at demand `d` when some `k` replicas
cost less than the API bill they replace, `k·h + F < api·min(d, k·u·cap)`. The smallest such `k` sets the
entry point; each later replica pays for itself once the overflow beyond its predecessors (which would
otherwise go to the API) is worth its hourly price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costpolicy.money import HOURS_PER_MONTH, SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_MONTH, ceil_int
from costpolicy.pricing import (
    api_bill,
    api_cost_per_token,
    api_per_million_tokens,
    mix_capacity_tps,
    overhead_per_hour,
    replica_cost_per_hour,
    self_hosted_cost_per_hour,
)
from costpolicy.spec import CostSpec


@dataclass(frozen=True, slots=True)
class ReplicaBreakEven:
    """Replica `replicas` is worth paying for once demand reaches `tokens_per_second` at the given mix."""

    replicas: int
    tokens_per_second: Decimal
    tokens_per_day: Decimal
    calls_per_month: Decimal
    capacity_tokens_per_second: Decimal  # what `replicas` replicas serve at the target utilisation


@dataclass(frozen=True, slots=True)
class BreakEven:
    input_tokens_per_call: Decimal
    output_tokens_per_call: Decimal
    replica_cost_per_hour: Decimal
    fixed_cost_per_month: Decimal
    api_cost_per_call: Decimal
    api_per_million_tokens: Decimal
    replica_capacity_tokens_per_second: Decimal  # one replica at the target utilisation, at this mix
    points: tuple[ReplicaBreakEven, ...]  # empty when self-hosting never wins at this mix

    @property
    def entry(self) -> ReplicaBreakEven | None:
        """The demand at which self-hosting starts to win (None: never, at this mix and utilisation)."""
        return self.points[0] if self.points else None


def tokens_per_day(tokens_per_second: Decimal) -> Decimal:
    return tokens_per_second * SECONDS_PER_DAY


BREAK_EVEN_POINTS = 16  # marginal replicas listed: past the first few each adds the same capacity, so more is noise
PLOTTED_REPLICAS = 16  # replica counts monthly_cost_curves draws a line for


def break_even(
    spec: CostSpec, input_tokens: Decimal, output_tokens: Decimal, max_points: int = BREAK_EVEN_POINTS
) -> BreakEven:
    """Break-even points for the first `max_points` replica counts from the one that first pays for itself, up to
    replicas.max, at one call shape (input and output tokens per call). The work never grows with replicas.max."""
    per_call_tokens = input_tokens + output_tokens
    h = replica_cost_per_hour(spec) / SECONDS_PER_HOUR  # $ per replica-second
    fixed = overhead_per_hour(spec) / SECONDS_PER_HOUR
    api_per_token = api_cost_per_token(spec.api_pricing, input_tokens, output_tokens)
    replica_tps = spec.policy.target_utilization * mix_capacity_tps(spec.capacity, input_tokens, output_tokens)

    def point(k: int, tps: Decimal) -> ReplicaBreakEven:
        return ReplicaBreakEven(
            replicas=k,
            tokens_per_second=tps,
            tokens_per_day=tokens_per_day(tps),
            calls_per_month=tps * SECONDS_PER_MONTH / per_call_tokens,
            capacity_tokens_per_second=k * replica_tps,
        )

    points: list[ReplicaBreakEven] = []
    margin_per_replica = api_per_token * replica_tps - h  # $/s a full replica saves over the API
    if margin_per_replica > 0:
        first = int(fixed / margin_per_replica) + 1  # smallest k with k·margin > fixed
        if first <= spec.replicas.max:
            points.append(point(first, (first * h + fixed) / api_per_token))
            for k in range(first + 1, min(spec.replicas.max, first + max_points - 1) + 1):
                points.append(point(k, (k - 1) * replica_tps + h / api_per_token))
    return BreakEven(
        input_tokens_per_call=input_tokens,
        output_tokens_per_call=output_tokens,
        replica_cost_per_hour=replica_cost_per_hour(spec),
        fixed_cost_per_month=spec.self_hosted.overhead_per_month,
        api_cost_per_call=api_bill(spec.api_pricing, input_tokens, output_tokens),
        api_per_million_tokens=api_per_million_tokens(spec.api_pricing, input_tokens, output_tokens),
        replica_capacity_tokens_per_second=replica_tps,
        points=tuple(points),
    )


def plotted_replicas(spec: CostSpec) -> list[int]:
    """At most PLOTTED_REPLICAS counts spread over 1..replicas.max (all of them when there are few)."""
    top = spec.replicas.max
    if top <= PLOTTED_REPLICAS:
        return list(range(1, top + 1))
    return sorted({1 + (top - 1) * i // (PLOTTED_REPLICAS - 1) for i in range(PLOTTED_REPLICAS)})


def monthly_cost_curves(
    spec: CostSpec, input_tokens: Decimal, output_tokens: Decimal, daily_volumes: list[Decimal]
) -> dict[str, list[Decimal | None]]:
    """Monthly cost against daily token volume: the API, each plotted replica count (None past its capacity, where
    it would have to spill), and the cheapest mix of replicas plus spill (what CostOptimized aims for).

    The cheapest mix is linear in the replica count between 1 and the count that serves the volume (each replica
    costs the same and spills the same amount less), so its minimum is at an end: no loop over replicas.max."""
    api_per_token = api_cost_per_token(spec.api_pricing, input_tokens, output_tokens)
    replica_tps = spec.policy.target_utilization * mix_capacity_tps(spec.capacity, input_tokens, output_tokens)
    days_per_month = HOURS_PER_MONTH / 24
    shown = plotted_replicas(spec)
    curves: dict[str, list[Decimal | None]] = {"api": [], "best": []}
    for k in shown:
        curves[f"replicas={k}"] = []

    def mixed(k: int, tps: Decimal) -> Decimal:
        fixed = self_hosted_cost_per_hour(spec, k) * HOURS_PER_MONTH
        return fixed + max(Decimal(0), tps - k * replica_tps) * SECONDS_PER_MONTH * api_per_token

    for volume in daily_volumes:
        api_month = volume * days_per_month * api_per_token
        curves["api"].append(api_month)
        tps = volume / SECONDS_PER_DAY
        for k in shown:
            fixed = self_hosted_cost_per_hour(spec, k) * HOURS_PER_MONTH
            curves[f"replicas={k}"].append(fixed if tps <= k * replica_tps else None)
        full = min(spec.replicas.max, max(1, ceil_int(tps / replica_tps))) if replica_tps > 0 else 1
        candidates = {1, full, max(1, full - 1)}
        curves["best"].append(min([api_month, *(mixed(k, tps) for k in candidates)]))
    return curves
