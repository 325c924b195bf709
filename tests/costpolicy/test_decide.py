"""decide(): each stage of the pipeline, each mode, and the failure cases the design calls out.

One case type, one runner, one row per case (as the Kubernetes HPA's replica_calculator_test.go): a row gives the
spec overrides, what the cluster and the metrics show, the recommendation history, and only the expectations that
matter for it (None: not checked). The cases that follow a decision through time stay functions below the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from costpolicy import (
    Action,
    Decision,
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
OUTPUT_3000 = Demand(D(0), D(3000))  # 1.0 busy: one replica at 80 % leaves 0.2 of it
HOUR = timedelta(hours=1)
NO_OVERHEAD = {"selfHosted.overheadPerMonth": "0"}
CHEAP_OUTPUT = {**NO_OVERHEAD, "apiPricing.outputPerMillion": "0.50"}


@dataclass(frozen=True)
class Case:
    name: str
    demand: Demand | None
    spec: dict[str, Any] = field(default_factory=dict)  # make_spec overrides
    current: int = 0
    ready: int | None = None  # None: all current replicas are ready
    warming: int = 0
    unschedulable: int = 0
    history: tuple[tuple[timedelta, int], ...] = ()  # (how long ago, recommended replicas)
    spent: Decimal | None = None  # API spend this month
    routing: Decimal | None = None  # the spill fraction in force
    metrics_age: timedelta = timedelta(0)
    # expectations
    replicas: int | None = None
    recommended: int | None = None
    reason: Reason | None = None
    action: Action | None = None
    spill: Decimal | None = None
    spill_at_most: Decimal | None = None
    actuate: bool | None = None
    flags: dict[str, bool] = field(default_factory=dict)
    message: str | None = None


def run(case: Case) -> Decision:
    spec = make_spec(**case.spec)
    ready = case.current if case.ready is None else case.ready
    replicas = ReplicaState(case.current, ready, case.warming, case.unschedulable)
    snapshot = Snapshot(NOW - case.metrics_age, replicas, case.demand, case.spent, current_spill_fraction=case.routing)
    history = tuple(Recommendation(NOW - ago, count) for ago, count in case.history)
    return decide(spec, snapshot, history, NOW)


CASES = [
    # raw: the cheapest count
    Case("above break-even: scale from zero, spill while warming", HIGH,
         replicas=4, reason=Reason.SELF_HOSTED_CHEAPER, action=Action.SCALE_UP, spill=D(1), flags={"spilling": True}),
    Case("once ready the spill stops", HIGH, current=4, history=((HOUR, 4),),
         replicas=4, spill=D(0), action=Action.HOLD, flags={"spilling": False}),
    Case("below break-even: stay on the API", LOW, replicas=0, reason=Reason.API_CHEAPER, spill=D(1)),
    Case("no demand, no replicas", Demand(D(0), D(0)), replicas=0, reason=Reason.NO_DEMAND),
    # overflow 0.2 replica x 3000 tok/s x $5/M = $10.8/h > $2.5/h: a second replica pays
    Case("a partial replica pays when the API is dear", OUTPUT_3000, spec=NO_OVERHEAD, replicas=2),
    # overflow 600 tok/s x $0.5/M = $1.08/h < $2.5/h: one replica, the rest spills
    Case("a partial replica is left to a cheap API", OUTPUT_3000, spec=CHEAP_OUTPUT, current=1,
         history=((HOUR, 1),), replicas=1, spill=D("0.2")),
    Case("saturation at max spills the excess", HIGH, spec={"replicas.max": 2}, current=2, history=((HOUR, 4),),
         replicas=2, spill=1 - D("1.6") / 3, flags={"capacity_limited": True}, message="replicas.max reached"),
    Case("saturation spill can be switched off", HIGH,
         spec={"replicas.max": 2, "policy.spill.onSaturation": False}, current=2, spill=D(0)),
    # margin
    Case("the margin keeps a near-optimal count", Demand(D(0), D(5000)),
         spec={**NO_OVERHEAD, "policy.breakEvenMargin": "0.5"}, current=2, history=((HOUR, 2),),
         replicas=2, reason=Reason.WITHIN_MARGIN),
    # stabilisation and rate limits
    Case("scale-down waits for the window", LOW, current=4, history=((2 * HOUR, 4),),
         replicas=4, recommended=0, reason=Reason.SCALE_DOWN_STABILIZING),
    Case("after the window, scale down", LOW, current=4, history=((2 * HOUR, 4), (timedelta(seconds=901), 0)),
         replicas=0, action=Action.SCALE_DOWN),
    # the default up-window is the default 120 s rate window: a count asked for 90 s does not start replicas yet
    Case("scale-up waits for the window", HIGH, current=1, history=((HOUR, 1), (timedelta(seconds=90), 4)),
         replicas=1, recommended=4, reason=Reason.SCALE_UP_STABILIZING),
    Case("after the window, scale up", HIGH, current=1, history=((HOUR, 1), (timedelta(seconds=121), 4)),
         replicas=4, action=Action.SCALE_UP),
    Case("a restart with no history never scales down", LOW, current=4,
         replicas=4, reason=Reason.SCALE_DOWN_STABILIZING),
    Case("scale-up is rate limited", HIGH.scaled(D(3)), spec={"replicas.max": 16},
         replicas=4, recommended=12, reason=Reason.SCALE_UP_RATE_LIMITED),
    Case("the next step adds 100 % of current", HIGH.scaled(D(3)), spec={"replicas.max": 16}, current=4,
         history=((timedelta(seconds=30), 12),), replicas=8, reason=Reason.SCALE_UP_RATE_LIMITED),
    # metrics
    Case("missing metrics hold replicas and say so", None, current=3,
         replicas=3, reason=Reason.METRICS_UNAVAILABLE, flags={"metrics_available": False}),
    Case("stale metrics are not zero traffic", Demand(D(0), D(0)), current=3, metrics_age=timedelta(minutes=10),
         replicas=3, reason=Reason.METRICS_STALE),
    Case("missing metrics keep the routing in force", None, current=2, routing=D("0.3"), spill=D("0.3")),
    # capacity
    Case("unschedulable pods count as no capacity", HIGH, current=4, ready=2, unschedulable=2, history=((HOUR, 4),),
         replicas=4, spill=1 - D("1.6") / 3, flags={"capacity_limited": True}, message="cannot be scheduled"),
    Case("cold-start spill can be switched off", HIGH, spec={"policy.spill.onColdStart": False}, current=4,
         ready=0, warming=4, history=((HOUR, 4),), spill=D(0)),
    # the API's limits
    Case("an exhausted budget prefers self-hosting and stops spilling", LOW,
         spec={"policy.budget.apiPerMonth": "100"}, spent=D(100),
         replicas=1, reason=Reason.BUDGET_EXCEEDED, spill=D(0), flags={"budget_exceeded": True}),
    # $10 left with ~228 hours to go: ~$0.04/h may go to the API; LOW costs ~$0.36/h on the API
    Case("the budget's pace limits the spill share", LOW, spec={"policy.budget.apiPerMonth": "100"}, current=1,
         spent=D(90), spill_at_most=D("0.2")),
    Case("without a token limit one replica and a cheap API", OUTPUT_3000, spec=CHEAP_OUTPUT, replicas=1),
    Case("a token limit makes self-hosting take more", OUTPUT_3000,
         spec={**CHEAP_OUTPUT, "apiLimits.tokensPerMinute": 6000},  # 90 tok/s usable
         replicas=2, reason=Reason.API_RATE_LIMITED, flags={"api_rate_limited": True}),
    Case("a token limit caps the spill", OUTPUT_3000, spec={"apiLimits.tokensPerMinute": 60000},  # 900 tok/s
         spill_at_most=D(900) / D(3000)),
    # modes
    Case("APIOnly keeps min and spills everything", HIGH, spec={"policy.mode": "APIOnly", "replicas.min": 1},
         current=1, replicas=1, spill=D(1)),
    Case("SelfHostedOnly never spills", LOW, spec={"policy.mode": "SelfHostedOnly"},
         replicas=1, spill=D(0), reason=Reason.SELF_HOSTED_ONLY),
    Case("Advisory computes the same count", HIGH, spec={"policy.mode": "Advisory"}, replicas=4, actuate=False),
    Case("CostOptimized actuates it", HIGH, replicas=4, actuate=True),
    Case("pinned replicas bypass the policy", LOW, spec={"replicas.pinned": 3}, current=1,
         replicas=3, reason=Reason.PINNED),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decide(case: Case) -> None:
    d = run(case)
    expected = {
        "replicas": (case.replicas, d.replicas),
        "recommended": (case.recommended, d.recommended_replicas),
        "reason": (case.reason, d.reason),
        "action": (case.action, d.action),
        "spill": (case.spill, d.spill_fraction),
        "actuate": (case.actuate, d.actuate),
    }
    for what, (want, got) in expected.items():
        if want is not None:
            assert got == want, f"{what}: {got} != {want} ({d.message})"
    if case.spill_at_most is not None:
        assert d.spill_fraction <= case.spill_at_most
    for flag, want in case.flags.items():
        assert getattr(d.flags, flag) is want, flag
    if case.message is not None:
        assert case.message in d.message


def test_every_row_checks_something() -> None:
    checks = ("replicas", "recommended", "reason", "action", "spill", "spill_at_most", "actuate", "message")
    for case in CASES:
        assert any(getattr(case, c) is not None for c in checks) or case.flags, case.name


def test_each_stage_outcome_has_its_own_reason(spec):
    """A change beyond the margin, and stages with nothing to do, are not reported as `WithinMargin`."""
    d = decide(spec, Snapshot(NOW, ReplicaState(3, 3), HIGH), (Recommendation(NOW - HOUR, 4),), NOW)
    assert d.replicas == 4
    stages = {stage.name: stage for stage in d.stages}
    assert list(stages) == [StageName.RAW, StageName.MARGIN, StageName.STABILIZATION, StageName.RATE_LIMIT,
                            StageName.CLAMP]  # fmt: skip
    assert stages[StageName.MARGIN].reason is Reason.BEYOND_MARGIN
    for name in (StageName.STABILIZATION, StageName.RATE_LIMIT, StageName.CLAMP):
        assert stages[name].reason is Reason.UNCHANGED, stages[name]
    assert Reason.WITHIN_MARGIN not in {stage.reason for stage in d.stages}


def test_the_history_a_decision_returns_drives_the_next(spec):
    """Through time: the held scale-down's own history lets the next decision, after the window, go down."""
    held = decide(spec, Snapshot(NOW, ReplicaState(4, 4), LOW), (Recommendation(NOW - 2 * HOUR, 4),), NOW)
    assert held.replicas == 4
    later = NOW + timedelta(seconds=spec.policy.scale_down_stabilization_seconds + 1)
    assert decide(spec, Snapshot(later, ReplicaState(4, 4), LOW), held.history, later).replicas == 0


def test_costs_are_reported(spec):
    d = decide(spec, Snapshot(NOW, ReplicaState(4, 4), HIGH), (Recommendation(NOW, 4),), NOW)
    # API: 30000 x $1 + 6000 x $5 = $0.06/s over 36000 tok/s = $1.6667/Mtok
    assert d.costs.api_per_million_tokens is not None
    assert d.costs.api_per_million_tokens.quantize(D("0.0001")) == D("1.6667")
    assert d.costs.self_hosted_hourly == 4 * D("2.50") + D(600) / 730
    assert d.costs.self_hosted_per_million_tokens is not None
    assert d.costs.self_hosted_per_million_tokens < d.costs.api_per_million_tokens
    assert d.costs.api_hourly == 0
    assert d.mode is PolicyMode.COST_OPTIMIZED
