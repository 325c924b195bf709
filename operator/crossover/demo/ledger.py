"""The demo's three running totals: crossover as it ran, the same traffic all on the API, and a static fleet.

All money is Decimal and every bill is costpolicy.pricing's. Prices are the compressed manifest's, in wall time
(see compression.py), so the totals are the real-time dollars of the replayed period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from costpolicy.pricing import api_bill, busy_replicas, replica_bill, replicas_to_serve
from costpolicy.snapshot import Demand
from costpolicy.spec import Capacity, CostSpec


def static_fleet_size(
    windows: list[tuple[Decimal, Decimal]], capacity: Capacity, target_utilization: Decimal, maximum: int
) -> int:
    """Replicas a team would run all the time: enough for the busiest window at the target utilisation."""
    peak = max(
        (busy_replicas(Demand(input_tps=i, output_tps=o), capacity) for i, o in windows),
        default=Decimal(0),
    )
    return min(maximum, max(1, replicas_to_serve(peak, target_utilization)))


@dataclass
class Ledger:
    spec: CostSpec
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
        replicas, overhead = replica_bill(self.spec, billed_replicas, seconds)
        static, static_overhead = replica_bill(self.spec, self.static_replicas, seconds)
        self.replicas += replicas
        self.overhead += overhead
        self.static += static
        self.static_overhead += static_overhead

    def served(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> None:
        self.api_only += api_bill(self.spec.api_pricing, input_tokens, output_tokens, cached_input_tokens)

    def set_api_spend(self, dollars: Decimal) -> None:
        self.api = dollars
