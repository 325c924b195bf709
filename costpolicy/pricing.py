"""Every price and every capacity figure, once: what the API bills, what a replica costs, what replicas serve.

decide(), break-even, the simulator, the offline optimum, the router's spend counter and the demo's ledger all
call these functions, so a benchmark compares policies on the arithmetic the operator itself uses.

Capacity is two-dimensional. A replica's busy fraction for a demand is `input/prefill + output/decode`, so a
prompt-heavy mix fits many more tokens per replica than a chat mix with long answers; one tokens-per-second
figure gets the break-even wrong as soon as the mix moves.

`FloatCapacity` at the end is the capacity arithmetic on the simulator's float token rates; a property test checks
it agrees with the Decimal form. No price is ever a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from costpolicy.money import HOURS_PER_MONTH, MILLION, ONE, SECONDS_PER_HOUR, ZERO, ceil_int
from costpolicy.snapshot import Demand
from costpolicy.spec import APIPricing, Capacity, CostSpec, SelfHostedPricing

# ---- the API's bill --------------------------------------------------------------------------------------------


def cached_input_per_million(pricing: APIPricing) -> Decimal:
    """The cached-input price; a provider without one bills cached input as plain input."""
    return pricing.input_per_million if pricing.cached_input_per_million is None else pricing.cached_input_per_million


def api_bill(
    pricing: APIPricing,
    input_tokens: Decimal | int,
    output_tokens: Decimal | int,
    cached_input_tokens: Decimal | int = 0,
) -> Decimal:
    """Dollars the API charges for these tokens (or, given tokens per second, dollars per second).

    `cached_input_tokens` is the part of `input_tokens` billed at the cached price; more than the input is capped.
    """
    cached = min(Decimal(cached_input_tokens), Decimal(input_tokens))
    return (
        (input_tokens - cached) * pricing.input_per_million
        + cached * cached_input_per_million(pricing)
        + output_tokens * pricing.output_per_million
    ) / MILLION


def api_cost_per_second(demand: Demand, pricing: APIPricing) -> Decimal:
    """Dollars per second the API would charge for all of `demand`, cached input at its own price."""
    return api_bill(pricing, demand.input_tps, demand.output_tps, demand.cached_input_tps)


def per_million(amount: Decimal, tokens: Decimal) -> Decimal | None:
    """Dollars per million tokens, or None when no tokens flow (an undefined price, not zero)."""
    if tokens <= 0:
        return None
    return amount * MILLION / tokens


def api_per_million_tokens(pricing: APIPricing, input_tokens: Decimal, output_tokens: Decimal) -> Decimal:
    """The API's blended price per million tokens at an input/output mix."""
    blended = per_million(api_bill(pricing, input_tokens, output_tokens), input_tokens + output_tokens)
    if blended is None:
        raise ValueError("a token mix needs input or output tokens")
    return blended


def api_cost_per_token(pricing: APIPricing, input_tokens: Decimal, output_tokens: Decimal) -> Decimal:
    """The API's blended price of one token at an input/output mix."""
    return api_per_million_tokens(pricing, input_tokens, output_tokens) / MILLION


# ---- what replicas cost ----------------------------------------------------------------------------------------


def gpu_cost_per_hour(pricing: SelfHostedPricing) -> Decimal:
    """Keeping one GPU for an hour: the rental price, or the purchase amortised plus the power it burns (PUE)."""
    if pricing.rented is not None:
        return pricing.rented.price_per_gpu_hour
    owned = pricing.owned
    assert owned is not None  # guaranteed by SelfHostedPricing's validator
    amortization = owned.purchase_price_per_gpu / (owned.amortization_months * HOURS_PER_MONTH)
    energy = Decimal(owned.power_watts) / 1000 * owned.pue * owned.electricity_price_per_kwh
    return amortization + energy


def replica_cost_per_hour(spec: CostSpec) -> Decimal:
    return gpu_cost_per_hour(spec.self_hosted.pricing) * spec.gpus_per_replica


def overhead_per_hour(spec: CostSpec) -> Decimal:
    """The fixed engineering and operations cost, per hour of a 730-hour month."""
    return spec.self_hosted.overhead_per_month / HOURS_PER_MONTH


def self_hosted_cost_per_hour(spec: CostSpec, replicas: int) -> Decimal:
    """Replicas plus the fixed overhead, which is paid only while self-hosting is in use."""
    if replicas <= 0:
        return ZERO
    return replicas * replica_cost_per_hour(spec) + overhead_per_hour(spec)


def replica_bill(spec: CostSpec, billed: int, seconds: Decimal) -> tuple[Decimal, Decimal]:
    """(replicas, overhead) dollars for `billed` replicas kept `seconds`: the simulator's and the ledger's bill."""
    hours = seconds / SECONDS_PER_HOUR
    overhead = overhead_per_hour(spec) * hours if billed > 0 else ZERO
    return billed * replica_cost_per_hour(spec) * hours, overhead


def cold_start_cost_per_hour(spec: CostSpec, new_replicas: int) -> Decimal:
    """Warm-up of `new_replicas`: paid while serving nothing, amortised over the time a new replica is kept at
    least (the scale-down window, or its own cold start if longer)."""
    if new_replicas <= 0 or spec.cold_start_seconds <= 0:
        return ZERO
    hold = max(spec.policy.scale_down_stabilization_seconds, spec.cold_start_seconds)
    return new_replicas * replica_cost_per_hour(spec) * Decimal(spec.cold_start_seconds) / Decimal(hold)


# ---- what replicas serve ---------------------------------------------------------------------------------------


def busy_replicas(demand: Demand, capacity: Capacity) -> Decimal:
    """Replica-equivalents of GPU time the demand needs at 100 % busy: `in/prefill + out/decode`."""
    return demand.input_tps / capacity.prefill_tokens_per_second + demand.output_tps / capacity.decode_tokens_per_second


def served_fraction(busy: Decimal, replicas: int, utilization: Decimal) -> Decimal:
    """Share of demand `replicas` can serve when planned to run at `utilization` busy."""
    if busy <= 0:
        return ONE
    return min(ONE, replicas * utilization / busy)


def replicas_to_serve(busy: Decimal, utilization: Decimal) -> int:
    """Fewest replicas that serve all of a demand `busy` replica-equivalents large at `utilization`."""
    return ceil_int(busy / utilization)


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


def self_hosted_per_million_at_utilization(
    spec: CostSpec, utilization: Decimal, input_tokens: Decimal, output_tokens: Decimal, replicas: int = 1
) -> Decimal:
    """Effective $/Mtok of `replicas` replicas (overhead included) running `utilization` busy at a mix."""
    if utilization <= 0:
        raise ValueError("utilization must be greater than zero")
    tokens_per_hour = replicas * utilization * mix_capacity_tps(spec.capacity, input_tokens, output_tokens)
    price = per_million(self_hosted_cost_per_hour(spec, replicas), tokens_per_hour * SECONDS_PER_HOUR)
    assert price is not None  # tokens_per_hour > 0: utilisation and capacity are positive
    return price


# ---- a plan ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """A demand priced once for a spec: the replica time it needs and what the API would bill for all of it.
    decide() builds one per decision, so no stage and no loop over replica counts prices it again."""

    demand: Demand
    busy: Decimal  # replica-equivalents at 100 % busy
    api_per_second: Decimal  # dollars per second, all of it on the API

    @classmethod
    def of(cls, spec: CostSpec, demand: Demand) -> Load:
        return cls(demand, busy_replicas(demand, spec.capacity), api_cost_per_second(demand, spec.api_pricing))

    def spill(self, spec: CostSpec, replicas: int) -> Decimal:
        """Share of the demand `replicas` leave to the API at the target utilisation."""
        return 1 - served_fraction(self.busy, replicas, spec.policy.target_utilization)


def plan_cost_per_hour(spec: CostSpec, load: Load, replicas: int, *, billed_now: int = 0) -> Decimal:
    """Hourly cost of serving `load` with `replicas` in steady state, spilling the rest to the API, plus the
    amortised cold start of the replicas above `billed_now` (they must warm up first)."""
    return (
        self_hosted_cost_per_hour(spec, replicas)
        + load.spill(spec, replicas) * load.api_per_second * SECONDS_PER_HOUR
        + cold_start_cost_per_hour(spec, replicas - billed_now)
    )


# ---- float form of capacity, for the simulator -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloatCapacity:
    """busy_replicas and served_fraction on float token rates: the simulator's rates are measurements in floats
    (money never is). A property test checks this agrees with the Decimal form. The offline optimum prices its
    search in Decimal: floats there were measured at only 1.3x faster over every `make bench` case."""

    prefill_tps: float
    decode_tps: float
    utilization: float

    @classmethod
    def of(cls, spec: CostSpec) -> FloatCapacity:
        capacity = spec.capacity
        return cls(
            float(capacity.prefill_tokens_per_second),
            float(capacity.decode_tokens_per_second),
            float(spec.policy.target_utilization),
        )

    def busy_replicas(self, input_tps: float, output_tps: float) -> float:
        return input_tps / self.prefill_tps + output_tps / self.decode_tps

    def served_fraction(self, busy: float, replicas: int) -> float:
        return 1.0 if busy <= 0 else min(1.0, replicas * self.utilization / busy)
