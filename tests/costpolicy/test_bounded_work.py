"""Issue 17, point 1: the work of decide() and of the break-even model follows demand, never replicas.max.

Before, `replicas.max: 4611686018427387904` made decide() iterate 0..max (a worker busy for good). No timings here
(they belong in bench/decide_scale.py); the tests count the plans priced.
"""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costpolicy import Demand, ReplicaState, Snapshot, decide
from costpolicy.breakeven import BREAK_EVEN_POINTS, PLOTTED_REPLICAS, break_even, monthly_cost_curves
from costpolicy.pricing import Load, plan_cost_per_hour
from costpolicy.spec import CostSpec, ReplicaBounds
from tests.costpolicy.conftest import NOW, make_spec

decide_module = importlib.import_module("costpolicy.decide")  # the package re-exports the function by that name
HUGE = 4611686018427387904  # 2**62, from the issue
HIGH = Demand(Decimal(30000), Decimal(6000))  # needs 4 replicas at 80 %


def with_max(spec: CostSpec, top: int) -> CostSpec:
    """The model now refuses such a max (le=1,000,000); decide() must still be bounded if code builds one."""
    return spec.model_copy(update={"replicas": ReplicaBounds.model_construct(min=0, max=top, pinned=None)})


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every replica count decide() prices a plan for."""
    counts: list[int] = []

    def counting(spec: CostSpec, load: Load, replicas: int, *, billed_now: int = 0) -> Decimal:
        counts.append(replicas)
        return plan_cost_per_hour(spec, load, replicas, billed_now=billed_now)

    monkeypatch.setattr(decide_module, "plan_cost_per_hour", counting)
    return counts


@pytest.mark.parametrize("top", [8, 1_000_000, HUGE])
def test_decide_prices_only_the_counts_demand_can_use(priced: list[int], top: int):
    d = decide(with_max(make_spec(), top), Snapshot(NOW, ReplicaState(0, 0), HIGH), (), NOW)
    assert d.replicas == 4
    assert max(priced) <= 5 and len(priced) <= 2 * 6 + 2  # two searches of 0..5 and the margin's two plans


def test_break_even_and_its_curves_do_not_grow_with_max():
    spec = with_max(make_spec(), HUGE)
    result = break_even(spec, Decimal(1000), Decimal(200))
    assert len(result.points) == BREAK_EVEN_POINTS
    curves = monthly_cost_curves(spec, Decimal(1000), Decimal(200), [Decimal(10**9), Decimal(10**12)])
    assert len(curves) == 2 + PLOTTED_REPLICAS


def _brute_force(spec: CostSpec, load: Load, billed: int) -> tuple[int, Decimal] | None:
    """The old search: every count in 0..max."""
    best = None
    for n in range(spec.replicas.max + 1):
        cost = plan_cost_per_hour(spec, load, n, billed_now=billed)
        if best is None or cost < best[1]:
            best = (n, cost)
    return best


@settings(max_examples=150, deadline=None)
@given(
    top=st.integers(1, 60),
    billed=st.integers(0, 60),
    input_tps=st.integers(0, 400_000),
    output_tps=st.integers(0, 40_000),
    overhead=st.sampled_from(["0", "600", "20000"]),
)
def test_the_bounded_search_picks_what_the_full_search_picked(top, billed, input_tps, output_tps, overhead):
    spec = with_max(make_spec(**{"selfHosted.overheadPerMonth": overhead}), top)
    load = Load.of(spec, Demand(Decimal(input_tps), Decimal(output_tps)))
    assert decide_module._cheapest(spec, load, billed, Decimal(1)) == _brute_force(spec, load, billed)
