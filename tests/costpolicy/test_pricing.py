"""costpolicy.pricing: the one owner of every bill. Its float forms agree with the Decimal ones, and the simulator,
which bills through it, charges what the operator's decision says for the same demand, to the cent."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costpolicy import decide
from costpolicy.pricing import (
    FloatCapacity,
    api_bill,
    busy_replicas,
    served_fraction,
)
from costpolicy.snapshot import Demand, ReplicaState, Snapshot
from crossover.sim.model import Demands, SimConfig, simulate
from crossover.sim.policies import CostAware
from crossover.sim.traces import Trace, Window
from tests.costpolicy.conftest import NOW, make_spec

D = Decimal
tps = st.decimals(min_value=0, max_value=200_000, places=3, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(i=tps, o=tps, n=st.integers(0, 64), u=st.sampled_from(["0.5", "0.8", "1"]))
def test_float_capacity_agrees_with_decimal(i, o, n, u):
    spec = make_spec(**{"policy.targetUtilization": u})
    capacity = FloatCapacity.of(spec)
    busy = busy_replicas(Demand(i, o), spec.capacity)
    busy_f = capacity.busy_replicas(float(i), float(o))
    assert busy_f == pytest.approx(float(busy), rel=1e-12, abs=1e-12)
    assert capacity.served_fraction(busy_f, n) == pytest.approx(float(served_fraction(busy, n, D(u))), rel=1e-9)


@pytest.mark.parametrize(
    ("cached", "dollars"),
    [
        (0, D("3.00")),  # 1M in at $1 + 0.4M out at $5
        (500_000, D("2.55")),  # half the input at the cached $0.10
        (2_000_000, D("2.10")),  # cached beyond the input is capped at the input
    ],
)
def test_api_bill_prices_cached_input_at_its_own_price(cached, dollars):
    assert api_bill(make_spec().api_pricing, 1_000_000, 400_000, cached) == dollars


@pytest.mark.parametrize(
    ("replicas", "input_tps", "output_tps", "spills"),
    [
        (2, 40_000, 3_000, True),  # beyond two replicas at 80 %: part of it spills
        (1, 5_000, 500, False),  # one replica serves everything
        (3, 90_000, 9_000, True),  # heavy spill
    ],
)
def test_simulator_and_operator_cost_the_same_demand_alike_to_the_cent(replicas, input_tps, output_tps, spills):
    """Pin the fleet, hold demand constant for an hour: the simulator's bill equals the decision's hourly costs."""
    spec = make_spec(**{"replicas.pinned": replicas, "policy.metricsMaxAgeSeconds": 3600})
    demand = Demand(D(input_tps), D(output_tps))
    snapshot = Snapshot(NOW, ReplicaState(replicas, replicas), demand)
    decision = decide(spec, snapshot, (), NOW + timedelta(seconds=1))
    assert decision.replicas == replicas and (decision.spill_fraction > 0) == spills
    operator_hourly = decision.costs.self_hosted_hourly + decision.costs.api_hourly

    trace = Trace("constant", (Window(0.0, 3600.0, float(input_tps), float(output_tps)),))
    config = SimConfig(control_interval_s=30, scrape_interval_s=15, rate_window_s=60, warmup_s=1800)
    result = simulate(spec, Demands(trace, config), CostAware(spec))
    assert {s.replicas_ready for s in result.steps} == {replicas}
    assert result.total.quantize(D("0.01")) == operator_hourly.quantize(D("0.01"))
