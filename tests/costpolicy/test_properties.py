"""Properties of decide() and the cost model over generated inputs (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from costpolicy import Demand, Recommendation, ReplicaState, Snapshot, decide
from costpolicy.daily import MIN_PAIRS, DailyProfile
from costpolicy.pricing import Load, plan_cost_per_hour
from costpolicy.reversion import Reversion
from tests.costpolicy.conftest import NOW, make_spec

tps = st.decimals(min_value=0, max_value=200_000, places=1, allow_nan=False, allow_infinity=False)
factor = st.decimals(min_value=1, max_value=20, places=2)
modes = st.sampled_from(["CostOptimized", "Advisory", "SelfHostedOnly", "APIOnly"])
replicas = st.integers(min_value=0, max_value=8)
history_entries = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3600), st.integers(min_value=0, max_value=8)), max_size=6
)


def _history(entries: list[tuple[int, int]]) -> tuple[Recommendation, ...]:
    ordered = sorted(entries, key=lambda e: -e[0])
    out: list[Recommendation] = []
    for seconds_ago, n in ordered:
        if not out or out[-1].replicas != n:
            out.append(Recommendation(NOW - timedelta(seconds=seconds_ago), n))
    return tuple(out)


budget = st.sampled_from([None, "50", "5000"])
spent = st.sampled_from([None, "0", "40", "60"])


@settings(max_examples=300, deadline=None)
@given(i=tps, o=tps, k=factor, current=replicas, ready=replicas, entries=history_entries, b=budget, s=spent)
def test_more_demand_never_lowers_desired_replicas(i, o, k, current, ready, entries, b, s):
    spec = make_spec(**({"policy.budget.apiPerMonth": b} if b else {}))
    history = _history(entries)
    state = ReplicaState(current, min(ready, current))
    spend = None if s is None else Decimal(s)
    low = decide(spec, Snapshot(NOW, state, Demand(i, o), api_spend_this_month=spend), history, NOW)
    high = decide(spec, Snapshot(NOW, state, Demand(i * k, o * k), api_spend_this_month=spend), history, NOW)
    assert high.replicas >= low.replicas


@settings(max_examples=300, deadline=None)
@given(
    i=tps,
    o=tps,
    mode=modes,
    current=replicas,
    ready=replicas,
    warming=replicas,
    unsched=replicas,
    entries=history_entries,
    b=budget,
    s=spent,
    maxf=st.sampled_from(["1", "0.5", "0"]),
)
def test_outputs_are_in_range_and_deterministic(i, o, mode, current, ready, warming, unsched, entries, b, s, maxf):
    overrides = {"policy.mode": mode, "policy.spill.maxFraction": maxf}
    if b:
        overrides["policy.budget.apiPerMonth"] = b
    spec = make_spec(**overrides)
    snap = Snapshot(
        NOW,
        ReplicaState(current, ready, warming, unsched),
        Demand(i, o),
        api_spend_this_month=None if s is None else Decimal(s),
    )
    history = _history(entries)
    first, second = decide(spec, snap, history, NOW), decide(spec, snap, history, NOW)
    assert first == second
    assert 0 <= first.spill_fraction <= 1
    assert first.spill_fraction <= Decimal(maxf) or mode == "APIOnly"
    assert spec.replicas.min <= first.replicas <= spec.replicas.max
    for value in (first.costs.self_hosted_hourly, first.costs.api_hourly):
        assert value >= 0
    for maybe in (first.costs.api_per_million_tokens, first.costs.self_hosted_per_million_tokens):
        assert maybe is None or maybe >= 0


@settings(max_examples=100, deadline=None)
@given(i=tps, o=tps, n=replicas, billed=replicas)
def test_plan_costs_are_never_negative(i, o, n, billed):
    spec = make_spec()
    cost = plan_cost_per_hour(spec, Load.of(spec, Demand(i, o)), n, billed_now=billed)
    assert cost >= 0


@settings(max_examples=100, deadline=None)
@given(i=tps, o=tps, start=replicas, mode=modes)
def test_constant_input_never_flaps(i, o, start, mode):
    """Feed the decision back as the cluster state for two hours: the count moves one way, then stays."""
    spec = make_spec(**{"policy.mode": mode})
    demand = Demand(i, o)
    state, history, counts = ReplicaState(start, start), (), [start]
    for step in range(240):
        now = NOW + timedelta(seconds=30 * step)
        d = decide(spec, Snapshot(now, state, demand), history, now)
        history = d.history
        state = ReplicaState(d.replicas, d.replicas)
        counts.append(d.replicas)
    ups = any(b > a for a, b in itertools.pairwise(counts))
    downs = any(b < a for a, b in itertools.pairwise(counts))
    assert not (ups and downs), counts
    assert counts[-1] == counts[-2] == counts[-30]


RAMP_PROFILE = DailyProfile(
    means=tuple(Decimal(m) for m in [300] * 8 + [6000, 12000] + [12000] * 10 + [6000] + [300] * 3),
    sxy=Decimal(100),
    sxx=Decimal(100),
    syy=Decimal(100),
    pairs=2 * MIN_PAIRS,
)  # a skilled profile with a morning ramp and an evening fall
LEARNED = Reversion(base=Decimal(2000), level=Decimal(1500), sxy=Decimal(50), sxx=Decimal(100), pairs=500,
                    drift_sxy=Decimal(50), drift_sxx=Decimal(100))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    i=tps,
    o=tps,
    current=replicas,
    entries=history_entries,
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    reversion=st.sampled_from([None, Reversion(), LEARNED]),
)
def test_a_daily_profile_only_ever_adds_replicas(i, o, current, entries, minute, reversion):
    """The prewarm stage raises the count for a ramp ahead and never lowers it: whatever the time of day, the other
    stages (stabilisation, the trough) included, a profile never leaves fewer replicas than no profile."""
    spec = make_spec()
    now = NOW.replace(hour=0, minute=0) + timedelta(minutes=minute)
    snap = Snapshot(now, ReplicaState(current, current), Demand(i, o))
    history = tuple(Recommendation(r.since - (NOW - now), r.replicas) for r in _history(entries))
    with_profile = decide(spec, snap, history, now, reversion, RAMP_PROFILE)
    without = decide(spec, snap, history, now, reversion)
    assert with_profile.replicas >= without.replicas
    assert with_profile.spill_fraction <= without.spill_fraction
