"""The policies a simulation can run: the operator's own (costpolicy.decide, fed as the operator feeds it), the
references it is benchmarked against, and the clairvoyant offline optimum. Apart from the simulated cluster
(`model`) so that the optimum, which replays model's accounting, and the policy list do not import each other."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from costpolicy.daily import DailyProfile
from costpolicy.daily import observe as learn_daily
from costpolicy.decide import decide
from costpolicy.decision import Reason, Recommendation
from costpolicy.pricing import FloatCapacity
from costpolicy.reversion import Reversion, observe
from costpolicy.snapshot import Demand, ReplicaState, Snapshot
from costpolicy.spec import CostSpec
from crossover.sim.model import EPOCH, Demands, Result, ScalingPolicy, View, simulate, to_decimal
from crossover.sim.optimum import offline_optimum


@dataclass
class CostAware:
    """The operator's own policy: costpolicy.decide, fed exactly as the operator feeds it (the demand forecast and
    the daily profile learn from each known reading of demand, at the time it was observed)."""

    spec: CostSpec
    name: str = "cost-aware"
    spills: bool = True
    history: tuple[Recommendation, ...] = ()
    forecast: bool = True
    reversion: Reversion = field(default_factory=Reversion)
    profile: DailyProfile = field(default_factory=DailyProfile)

    def initial(self, spec: CostSpec) -> int:
        return spec.replicas.min

    def decide(self, view: View) -> tuple[int, str]:
        now = EPOCH + timedelta(seconds=view.t)
        demand = (
            Demand(input_tps=to_decimal(view.observed[0]), output_tps=to_decimal(view.observed[1]))
            if view.observed is not None
            else None
        )
        snapshot = Snapshot(
            observed_at=now,
            replicas=ReplicaState(current=view.current, ready=view.ready, warming=view.warming),
            demand=demand,
            api_spend_this_month=view.api_spend,
            current_spill_fraction=view.spill_fraction,
        )
        if demand is not None:
            self.reversion = observe(self.reversion, snapshot.observed_at, demand.total_tps)
            self.profile = learn_daily(self.profile, snapshot.observed_at, demand.total_tps)
        forecasts = (self.reversion, self.profile) if self.forecast else (None, None)
        decision = decide(self.spec, snapshot, self.history, now, *forecasts)
        self.history = decision.history
        return (decision.replicas if decision.actuate else view.current), decision.reason.value


@dataclass
class APIOnly:
    name: str = "api-only"
    spills: bool = True

    def initial(self, spec: CostSpec) -> int:
        return 0

    def decide(self, view: View) -> tuple[int, str]:
        return 0, Reason.API_ONLY.value


@dataclass
class StaticPeak:
    """What teams do: enough replicas for the peak at the target utilisation, always on, no spill."""

    replicas: int
    name: str = "static-peak"
    spills: bool = False

    def initial(self, spec: CostSpec) -> int:
        return self.replicas

    def decide(self, view: View) -> tuple[int, str]:
        return self.replicas, "Static"


@dataclass
class HPAUtil:
    """A utilisation-target autoscaler with the HPA's defaults: 10 % tolerance, 300 s scale-down stabilisation,
    scale-up by at most max(100 %, 4 pods) per 15 s, at least one replica (the HPA cannot scale to zero)."""

    spec: CostSpec
    spills: bool = False
    name: str = "hpa-util"
    tolerance: float = 0.1
    down_window_s: float = 300.0
    recommendations: list[tuple[float, int]] = field(default_factory=list)

    def initial(self, spec: CostSpec) -> int:
        return max(1, spec.replicas.min)

    def decide(self, view: View) -> tuple[int, str]:
        floor = max(1, self.spec.replicas.min)
        if view.observed is None or view.ready == 0:
            return max(view.current, floor), "NoMetrics"
        utilisation = FloatCapacity.of(self.spec).busy_replicas(*view.observed) / view.ready
        ratio = utilisation / float(self.spec.policy.target_utilization)
        raw = view.current if abs(ratio - 1) <= self.tolerance else math.ceil(view.current * ratio)
        raw = max(floor, min(self.spec.replicas.max, raw))
        self.recommendations = [(t, r) for t, r in self.recommendations if t > view.t - self.down_window_s]
        self.recommendations.append((view.t, raw))
        stabilised = max(r for _, r in self.recommendations) if raw < view.current else raw
        limit = max(2 * view.current, view.current + 4)  # per 15 s; generous for a 30 s step
        return min(stabilised, limit), "Utilization"


def make_policy(name: str, spec: CostSpec, demands: Demands) -> ScalingPolicy:
    if name == "cost-aware":
        return CostAware(spec)
    if name == "api-only":
        return APIOnly()
    if name == "static-peak":
        prices = FloatCapacity.of(spec)
        peak = max((prices.busy_replicas(i, o) for i, o in demands.rates), default=0.0)
        return StaticPeak(min(spec.replicas.max, max(1, math.ceil(peak / prices.utilization - 1e-9))))
    if name == "hpa-util":
        return HPAUtil(spec)
    if name == "hpa-util-spill":
        return HPAUtil(spec, spills=True, name="hpa-util-spill")
    raise ValueError(f"unknown policy {name!r}")


POLICIES = ("cost-aware", "api-only", "static-peak", "hpa-util", "hpa-util-spill", "offline-optimum")


def run_policy(name: str, spec: CostSpec, demands: Demands) -> Result:
    if name == "offline-optimum":
        return offline_optimum(spec, demands)
    return simulate(spec, demands, make_policy(name, spec, demands))
