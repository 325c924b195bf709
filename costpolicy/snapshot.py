"""What the world looked like at one instant: demand and the replicas that exist. Built by the operator from
Prometheus and the Kubernetes API, by the simulator from a trace; decide() only reads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costpolicy.money import ZERO


@dataclass(frozen=True, slots=True)
class Demand:
    """Token throughput in tokens per second, before the router splits it between self-hosted and API.

    `cached_input_tps` is the part of `input_tps` the API would bill at its cached-input price.
    """

    input_tps: Decimal
    output_tps: Decimal
    cached_input_tps: Decimal = ZERO
    requests_per_second: Decimal | None = None

    def __post_init__(self) -> None:
        if self.input_tps < 0 or self.output_tps < 0 or self.cached_input_tps < 0:
            raise ValueError("demand cannot be negative")
        if self.cached_input_tps > self.input_tps:
            raise ValueError("cached input tokens cannot exceed input tokens")

    @property
    def total_tps(self) -> Decimal:
        return self.input_tps + self.output_tps

    def scaled(self, factor: Decimal) -> Demand:
        rps = None if self.requests_per_second is None else self.requests_per_second * factor
        return Demand(self.input_tps * factor, self.output_tps * factor, self.cached_input_tps * factor, rps)


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """Engine replicas as the cluster reports them.

    `current` is what the Deployment asks for now (its spec.replicas, as the HPA and KEDA name it; the decided
    count is the Decision's `replicas`); `ready` serve traffic; `warming` are scheduled but not ready
    (they cost money and serve nothing); `unschedulable` are Pending for lack of GPUs (no cost, no capacity).
    """

    current: int
    ready: int
    warming: int = 0
    unschedulable: int = 0

    def __post_init__(self) -> None:
        if min(self.current, self.ready, self.warming, self.unschedulable) < 0:
            raise ValueError("replica counts cannot be negative")

    @property
    def billed(self) -> int:
        """Replicas that cost money: running, ready or not."""
        return self.ready + self.warming


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One observation. `demand` is None when metrics could not be read: unknown, never zero."""

    observed_at: datetime
    replicas: ReplicaState
    demand: Demand | None
    api_spend_this_month: Decimal | None = None
    api_throttled: bool = False
    current_spill_fraction: Decimal | None = None  # the routing in force, kept when metrics are missing
