"""The demo's three running totals: crossover as it ran, the same traffic all on the API, and a static fleet.

All money is Decimal. Prices are the compressed manifest's, in wall time (see compression.py), so the totals are
the real-time dollars of the replayed period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from costpolicy.economics import busy_replicas
from costpolicy.money import HOURS_PER_MONTH
from costpolicy.snapshot import Demand
from costpolicy.spec import APIPricing, Capacity

SECONDS_PER_HOUR = Decimal(3600)


def api_cost(pricing: APIPricing, input_tokens: int, output_tokens: int) -> Decimal:
    million = Decimal(1_000_000)
    return (pricing.input_per_million * input_tokens + pricing.output_per_million * output_tokens) / million


def static_fleet_size(
    windows: list[tuple[Decimal, Decimal]], capacity: Capacity, target_utilization: Decimal, maximum: int
) -> int:
    """Replicas a team would run all the time: enough for the busiest window at the target utilisation."""
    peak = max(
        (busy_replicas(Demand(input_tps=i, output_tps=o), capacity) for i, o in windows),
        default=Decimal(0),
    )
    return min(maximum, max(1, math.ceil(peak / target_utilization)))


@dataclass
class Ledger:
    replica_per_hour: Decimal
    overhead_per_month: Decimal
    pricing: APIPricing
    static_replicas: int
    elapsed_seconds: Decimal = Decimal(0)
    overhead: Decimal = Decimal(0)  # fixed overhead while crossover self-hosts (replicas > 0), as in the cost model
    static_overhead: Decimal = Decimal(0)
    replicas: Decimal = Decimal(0)  # crossover's replica spend
    api: Decimal = Decimal(0)  # crossover's API spend (the router's own counter)
    api_only: Decimal = Decimal(0)  # every served token at API prices
    static: Decimal = Decimal(0)  # the static fleet's replicas
    samples: list[dict[str, str]] = field(default_factory=list)

    @property
    def crossover_total(self) -> Decimal:
        return self.replicas + self.overhead + self.api

    @property
    def static_total(self) -> Decimal:
        return self.static + self.static_overhead

    def advance(self, seconds: Decimal, billed_replicas: int) -> None:
        """Time passes: replicas that exist (warming or ready) are paid for; so is the static fleet."""
        self.elapsed_seconds += seconds
        overhead = self.overhead_per_month / (HOURS_PER_MONTH * SECONDS_PER_HOUR) * seconds
        self.replicas += self.replica_per_hour * billed_replicas * seconds / SECONDS_PER_HOUR
        self.overhead += overhead if billed_replicas > 0 else Decimal(0)
        self.static += self.replica_per_hour * self.static_replicas * seconds / SECONDS_PER_HOUR
        self.static_overhead += overhead

    def served(self, input_tokens: int, output_tokens: int) -> None:
        self.api_only += api_cost(self.pricing, input_tokens, output_tokens)

    def set_api_spend(self, dollars: Decimal) -> None:
        self.api = dollars
