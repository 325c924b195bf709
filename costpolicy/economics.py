"""The cost model: what a replica costs, what it can serve, what the API charges, what a plan costs per hour.

Capacity is two-dimensional. A replica's busy fraction for a demand is `input/prefill + output/decode`, so a
prompt-heavy mix fits many more tokens per replica than a chat mix with long answers; one tokens-per-second
figure gets the break-even wrong as soon as the mix moves.
"""

from __future__ import annotations

from decimal import Decimal

from costpolicy.money import MILLION, SECONDS_PER_HOUR, ZERO
from costpolicy.snapshot import Demand
from costpolicy.spec import APIPricing, Capacity, CostSpec


def busy_replicas(demand: Demand, capacity: Capacity) -> Decimal:
    """Replica-equivalents of GPU time the demand needs at 100 % busy: `in/prefill + out/decode`."""
    return demand.input_tps / capacity.prefill_tokens_per_second + demand.output_tps / capacity.decode_tokens_per_second


def mix_capacity_tps(capacity: Capacity, input_tokens: Decimal, output_tokens: Decimal) -> Decimal:
    """Tokens per second (input + output) one fully busy replica serves at the given input/output mix."""
    total = input_tokens + output_tokens
    if total <= 0:
        raise ValueError("a token mix needs input or output tokens")
    seconds_per_token = (
        input_tokens / total / capacity.prefill_tokens_per_second
        + output_tokens / total / capacity.decode_tokens_per_second
    )
    return 1 / seconds_per_token


def api_cost_per_second(demand: Demand, pricing: APIPricing) -> Decimal:
    """Dollars per second the API would charge for `demand`, cached input at its own price."""
    uncached = demand.input_tps - demand.cached_input_tps
    return (
        uncached * pricing.input_per_million
        + demand.cached_input_tps * pricing.cached_input_price
        + demand.output_tps * pricing.output_per_million
    ) / MILLION


def api_cost_per_call(pricing: APIPricing, input_tokens: Decimal, output_tokens: Decimal) -> Decimal:
    return (input_tokens * pricing.input_per_million + output_tokens * pricing.output_per_million) / MILLION


def api_per_million_tokens(pricing: APIPricing, input_tokens: Decimal, output_tokens: Decimal) -> Decimal:
    """The API's blended price per million tokens at an input/output mix."""
    total = input_tokens + output_tokens
    if total <= 0:
        raise ValueError("a token mix needs input or output tokens")
    return api_cost_per_call(pricing, input_tokens, output_tokens) * MILLION / total


def self_hosted_cost_per_hour(spec: CostSpec, replicas: int) -> Decimal:
    """Replicas plus the fixed overhead, which is paid only while self-hosting is in use."""
    if replicas <= 0:
        return ZERO
    return replicas * spec.replica_cost_per_hour() + spec.overhead_per_hour()


def served_fraction(busy: Decimal, replicas: int, utilization: Decimal) -> Decimal:
    """Share of demand `replicas` can serve when planned to run at `utilization` busy."""
    if busy <= 0:
        return Decimal(1)
    return min(Decimal(1), replicas * utilization / busy)


def self_hosted_per_million_at_utilization(
    spec: CostSpec, utilization: Decimal, input_tokens: Decimal, output_tokens: Decimal, replicas: int = 1
) -> Decimal:
    """Effective $/Mtok of `replicas` replicas (overhead included) running `utilization` busy at a mix."""
    if utilization <= 0:
        raise ValueError("utilization must be greater than zero")
    tokens_per_hour = replicas * utilization * mix_capacity_tps(spec.capacity, input_tokens, output_tokens)
    return self_hosted_cost_per_hour(spec, replicas) * MILLION / (tokens_per_hour * SECONDS_PER_HOUR)


def plan_cost_per_hour(
    spec: CostSpec, demand: Demand, replicas: int, *, billed_now: int = 0, api_available: bool = True
) -> Decimal | None:
    """Hourly cost of serving `demand` with `replicas` in steady state, spilling the rest to the API.

    Replicas above `billed_now` must first warm up: their cold start is paid and serves nothing, so it is
    charged, amortised over the time a new replica is kept at least (the scale-down window, or its own cold
    start if longer). Returns None when the plan is impossible (the API is unavailable and demand exceeds
    the replicas' capacity).
    """
    busy = busy_replicas(demand, spec.capacity)
    share = served_fraction(busy, replicas, spec.policy.target_utilization)
    spill = 1 - share
    if spill > 0 and not api_available:
        return None
    cost = self_hosted_cost_per_hour(spec, replicas)
    cost += spill * api_cost_per_second(demand, spec.api_pricing) * SECONDS_PER_HOUR
    new = replicas - billed_now
    if new > 0 and spec.cold_start_seconds > 0:
        hold = max(spec.policy.scale_down_stabilization_seconds, spec.cold_start_seconds)
        cost += new * spec.replica_cost_per_hour() * Decimal(spec.cold_start_seconds) / Decimal(hold)
    return cost
