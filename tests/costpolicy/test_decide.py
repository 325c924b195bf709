"""decide(): each stage of the pipeline, each mode, and the failure cases the design calls out."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from costpolicy import (
    Action,
    Demand,
    PolicyMode,
    Reason,
    Recommendation,
    ReplicaState,
    Snapshot,
    StageName,
    decide,
)
from tests.costpolicy.conftest import NOW, make_spec

D = Decimal
HIGH = Demand(D(30000), D(6000))  # busy = 1 + 2 = 3 replica-equivalents: 4 replicas at 80 %
LOW = Demand(D(200), D(40))  # well below the first replica's break-even (~400 tok/s at this mix)


def snap(demand: Demand | None, current: int = 0, ready: int | None = None, **kw: object) -> Snapshot:
    ready = current if ready is None else ready
    return Snapshot(NOW, ReplicaState(current=current, ready=ready, **kw), demand)  # type: ignore[arg-type]


def test_demand_above_break_even_scales_from_zero_and_spills_while_warming(spec):
    d = decide(spec, snap(HIGH), (), NOW)
    assert d.replicas == 4
    assert d.reason is Reason.SELF_HOSTED_CHEAPER
    assert d.action is Action.SCALE_UP
    assert d.spill_fraction == 1  # nothing is ready yet: all traffic goes to the API
    assert d.flags.spilling


def test_once_ready_the_spill_stops(spec):
    d = decide(spec, snap(HIGH, current=4, ready=4), (Recommendation(NOW - timedelta(hours=1), 4),), NOW)
    assert d.replicas == 4
    assert d.spill_fraction == 0
    assert d.action is Action.HOLD


def test_demand_below_break_even_stays_on_the_api(spec):
    d = decide(spec, snap(LOW), (), NOW)
    assert d.replicas == 0
    assert d.reason is Reason.API_CHEAPER
    assert d.spill_fraction == 1


def test_no_demand_no_replicas(spec):
    d = decide(spec, snap(Demand(D(0), D(0))), (), NOW)
    assert (d.replicas, d.reason) == (0, Reason.NO_DEMAND)


def test_partial_replica_is_left_to_the_api_when_it_does_not_pay():
    # one replica serves 0.8 busy; demand needs 1.0: the last 0.2 is only worth the API price
    spec = make_spec(**{"selfHosted.overheadPerMonth": "0", "capacity.decodeTokensPerSecond": "3000"})
    demand = Demand(D(0), D(3000))  # 1.0 busy; overflow 0.2 replica × 3000 tok/s × $5/M = $10.8/h > $2.5/h
    assert decide(spec, snap(demand), (), NOW).replicas == 2
    cheap_api = make_spec(**{"selfHosted.overheadPerMonth": "0", "apiPricing.outputPerMillion": "0.50"})
    # overflow now worth 600 tok/s × $0.5/M = $1.08/h < $2.5/h: pay for one replica, spill the rest
    d = decide(cheap_api, snap(demand, current=1), (Recommendation(NOW - timedelta(hours=1), 1),), NOW)
    assert d.replicas == 1
    assert d.spill_fraction == D("0.2")


def test_saturation_at_max_spills_the_excess():
    spec = make_spec(**{"replicas.max": 2})
    d = decide(spec, snap(HIGH, current=2), (Recommendation(NOW - timedelta(hours=1), 4),), NOW)
    assert d.replicas == 2
    assert d.flags.capacity_limited
    assert "replicas.max reached" in d.message
    assert d.spill_fraction == 1 - D("1.6") / 3
    no_sat = make_spec(**{"replicas.max": 2, "policy.spill.onSaturation": False})
    assert decide(no_sat, snap(HIGH, current=2), (), NOW).spill_fraction == 0


def test_scale_down_waits_for_the_window(spec):
    history = (Recommendation(NOW - timedelta(hours=2), 4),)
    held = decide(spec, snap(LOW, current=4), history, NOW)
    assert held.replicas == 4
    assert held.reason is Reason.SCALE_DOWN_STABILIZING
    later = NOW + timedelta(seconds=spec.policy.scale_down_stabilization_seconds + 1)
    d = decide(spec, Snapshot(later, ReplicaState(4, 4), LOW), held.history, later)
    assert d.replicas == 0
    assert d.action is Action.SCALE_DOWN


def test_a_restart_with_no_history_never_scales_down(spec):
    d = decide(spec, snap(LOW, current=4), (), NOW)
    assert d.replicas == 4
    assert d.reason is Reason.SCALE_DOWN_STABILIZING


def test_scale_up_is_rate_limited():
    spec = make_spec(**{"replicas.max": 16})
    huge = HIGH.scaled(D(3))  # 9 busy → 12 replicas
    d = decide(spec, snap(huge), (), NOW)
    assert d.recommended_replicas == 12
    assert d.replicas == 4
    assert d.reason is Reason.SCALE_UP_RATE_LIMITED
    d2 = decide(spec, snap(huge, current=4), d.history, NOW + timedelta(seconds=30))
    assert d2.replicas == 8  # 100 % of current


def test_margin_keeps_a_near_optimal_count():
    spec = make_spec(**{"policy.breakEvenMargin": "0.5", "selfHosted.overheadPerMonth": "0"})
    demand = Demand(D(0), D(5000))  # 1.67 busy: 3 replicas serve all; 2 replicas + spill is close
    d = decide(spec, snap(demand, current=2), (Recommendation(NOW - timedelta(hours=1), 2),), NOW)
    assert d.replicas == 2
    assert d.reason is Reason.WITHIN_MARGIN


def test_each_stage_outcome_has_its_own_reason(spec):
    """A change beyond the margin, and stages with nothing to do, are not reported as `WithinMargin`."""
    d = decide(spec, snap(HIGH, current=3), (Recommendation(NOW - timedelta(hours=1), 4),), NOW)
    assert d.replicas == 4
    stages = {stage.name: stage for stage in d.stages}
    assert list(stages) == [StageName.RAW, StageName.MARGIN, StageName.STABILIZATION, StageName.RATE_LIMIT,
                            StageName.CLAMP]  # fmt: skip
    assert stages[StageName.MARGIN].reason is Reason.BEYOND_MARGIN
    for name in (StageName.STABILIZATION, StageName.RATE_LIMIT, StageName.CLAMP):
        assert stages[name].reason is Reason.UNCHANGED, stages[name]
    assert Reason.WITHIN_MARGIN not in {stage.reason for stage in d.stages}


def test_missing_metrics_hold_replicas_and_say_so(spec):
    d = decide(spec, snap(None, current=3), (), NOW)
    assert d.replicas == 3
    assert d.reason is Reason.METRICS_UNAVAILABLE
    assert not d.flags.metrics_available


def test_stale_metrics_are_not_zero_traffic(spec):
    old = Snapshot(NOW - timedelta(minutes=10), ReplicaState(3, 3), Demand(D(0), D(0)))
    d = decide(spec, old, (), NOW)
    assert d.replicas == 3
    assert d.reason is Reason.METRICS_STALE


def test_missing_metrics_keep_the_routing_in_force(spec):
    s = Snapshot(NOW, ReplicaState(2, 2), None, current_spill_fraction=D("0.3"))
    assert decide(spec, s, (), NOW).spill_fraction == D("0.3")


def test_unschedulable_pods_count_as_no_capacity(spec):
    d = decide(spec, snap(HIGH, current=4, ready=2, unschedulable=2), (Recommendation(NOW, 4),), NOW)
    assert d.replicas == 4
    assert d.flags.capacity_limited
    assert d.spill_fraction == 1 - D("1.6") / 3
    assert "cannot be scheduled" in d.message


def test_cold_start_spill_can_be_disabled():
    spec = make_spec(**{"policy.spill.onColdStart": False})
    d = decide(spec, snap(HIGH, current=4, ready=0, warming=4), (Recommendation(NOW, 4),), NOW)
    assert d.spill_fraction == 0


def test_exhausted_budget_prefers_self_hosting_and_stops_spilling():
    spec = make_spec(**{"policy.budget.apiPerMonth": "100"})
    s = Snapshot(NOW, ReplicaState(0, 0), LOW, api_spend_this_month=D("100"))
    d = decide(spec, s, (), NOW)
    assert d.replicas == 1  # dearer than the API for LOW demand, but the API may not be used
    assert d.reason is Reason.BUDGET_EXCEEDED
    assert d.flags.budget_exceeded
    assert d.spill_fraction == 0


def test_budget_pace_limits_spill_share():
    # $10 left with ~228 hours to go: ~$0.04/h may go to the API; LOW costs ~$0.36/h on the API
    spec = make_spec(**{"policy.budget.apiPerMonth": "100"})
    s = Snapshot(NOW, ReplicaState(1, 1), LOW, api_spend_this_month=D("90"))
    d = decide(spec, s, (), NOW)
    assert d.replicas >= 1
    assert d.spill_fraction < D("0.2")


def test_api_token_limit_makes_self_hosting_take_more():
    spec = make_spec(**{"apiLimits.tokensPerMinute": 60000, "replicas.max": 8})  # 900 tok/s usable
    demand = Demand(D(0), D(3000))
    unlimited = make_spec(**{"apiPricing.outputPerMillion": "0.50", "selfHosted.overheadPerMonth": "0"})
    limited = make_spec(
        **{
            "apiPricing.outputPerMillion": "0.50",
            "selfHosted.overheadPerMonth": "0",
            "apiLimits.tokensPerMinute": 6000,
        }
    )  # 90 tok/s usable
    assert decide(unlimited, snap(demand), (), NOW).replicas == 1
    d = decide(limited, snap(demand), (), NOW)
    assert d.replicas == 2
    assert d.reason is Reason.API_RATE_LIMITED
    assert decide(spec, snap(demand), (), NOW).spill_fraction <= D(900) / D(3000)


def test_api_only_keeps_min_and_spills_everything():
    spec = make_spec(**{"policy.mode": "APIOnly", "replicas.min": 1})
    d = decide(spec, snap(HIGH, current=1), (), NOW)
    assert (d.replicas, d.spill_fraction) == (1, 1)


def test_self_hosted_only_never_spills():
    spec = make_spec(**{"policy.mode": "SelfHostedOnly"})
    d = decide(spec, snap(LOW), (), NOW)
    assert d.replicas == 1
    assert d.spill_fraction == 0
    assert d.reason is Reason.SELF_HOSTED_ONLY


def test_advisory_computes_the_same_but_does_not_actuate(spec):
    advisory = make_spec(**{"policy.mode": "Advisory"})
    a, c = decide(advisory, snap(HIGH), (), NOW), decide(spec, snap(HIGH), (), NOW)
    assert a.replicas == c.replicas
    assert not a.actuate and c.actuate
    assert a.mode is PolicyMode.ADVISORY


def test_pinned_replicas_bypass_the_policy():
    spec = make_spec(**{"replicas.pinned": 3})
    d = decide(spec, snap(LOW, current=1), (), NOW)
    assert (d.replicas, d.reason) == (3, Reason.PINNED)


def test_costs_are_reported(spec):
    d = decide(spec, snap(HIGH, current=4), (Recommendation(NOW, 4),), NOW)
    # API: 30000 × $1 + 6000 × $5 = $0.06/s over 36000 tok/s = $1.6667/Mtok
    assert d.costs.api_per_million_tokens is not None
    assert d.costs.api_per_million_tokens.quantize(D("0.0001")) == D("1.6667")
    assert d.costs.self_hosted_hourly == 4 * D("2.50") + D(600) / 730
    assert d.costs.self_hosted_per_million_tokens is not None
    assert d.costs.self_hosted_per_million_tokens < d.costs.api_per_million_tokens
    assert d.costs.api_hourly == 0
