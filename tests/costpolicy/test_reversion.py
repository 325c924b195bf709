"""The demand forecast (costpolicy.reversion) and the decide() stages it drives: the forecast stage waits out a peak
too short to repay a replica's cold start (a persistent rise, or a usual that self-hosting serves, is not waited
out); the trough stage lets a scale-down the down-window holds go ahead when the usual demand needs fewer replicas
and the expected trough repays a restart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from costpolicy import Demand, Reason, Recommendation, ReplicaState, Snapshot, StageName, decide
from costpolicy.reversion import DRIFT_EVERY, LAG_SECONDS, MIN_DRIFT_PAIRS, MIN_PAIRS, Reversion, observe
from tests.costpolicy.conftest import NOW, make_spec

D = Decimal
STEP = 30  # seconds between readings, as the operator's reconcile interval and the simulator's control loop


def feed(series: Callable[[int], float], seconds: int, state: Reversion | None = None) -> Reversion:
    """observe() every STEP seconds from NOW, demand series(t) at t seconds."""
    state = state or Reversion()
    for t in range(0, seconds, STEP):
        state = observe(state, NOW + timedelta(seconds=t), D(f"{series(t):.6f}"))
    return state


def bursts(persistence: float, every: int = 24 * LAG_SECONDS) -> Callable[[int], float]:
    """1000 tok/s with a burst of +800 every `every` seconds that decays by `persistence` per LAG_SECONDS."""
    return lambda t: 1000 + 800 * persistence ** ((t % every) / LAG_SECONDS)


def plateaus(t: int) -> float:
    """Demand that steps between 500 and 1500 tok/s every twelve hours: what rises stays up."""
    return 1500.0 if (t // 43200) % 2 else 500.0


@dataclass(frozen=True)
class ObserveCase:
    name: str
    series: Callable[[int], float]
    seconds: int
    trusted: bool
    persistence_between: tuple[float, float] | None = None
    drift_between: tuple[float, float] | None = None


OBSERVE_CASES = [
    ObserveCase("untrusted before 12 pairs: nothing is expected to revert", bursts(0.2), MIN_PAIRS * LAG_SECONDS,
                trusted=False, persistence_between=(1, 1), drift_between=(1, 1)),
    ObserveCase("trusted from 12 pairs on", bursts(0.2), (MIN_PAIRS + 1) * LAG_SECONDS, trusted=True),
    # the base follows a burst a little, so the slope reads low; what matters is that it orders the series
    ObserveCase("bursts that die out: low persistence", bursts(0.2), 2 * 86400, trusted=True,
                persistence_between=(0, 0.35)),
    ObserveCase("bursts that linger: higher persistence", bursts(0.8), 2 * 86400, trusted=True,
                persistence_between=(0.55, 0.9)),
    ObserveCase("plateaus: the deviation stays, the base keeps away from the level", plateaus, 4 * 86400,
                trusted=True, persistence_between=(0.75, 1), drift_between=(0.6, 1)),
    ObserveCase("constant demand: no deviation, no slope", lambda t: 700.0, 86400, trusted=False),
    ObserveCase("drift untrusted before a day of drift pairs", plateaus, MIN_DRIFT_PAIRS * DRIFT_EVERY * LAG_SECONDS,
                trusted=True, drift_between=(1, 1)),
]  # fmt: skip


@pytest.mark.parametrize("case", OBSERVE_CASES, ids=lambda c: c.name)
def test_observe(case: ObserveCase) -> None:
    state = feed(case.series, case.seconds)
    assert state.trusted is case.trusted
    if case.persistence_between is not None:
        low, high = case.persistence_between
        assert D(str(low)) <= state.persistence <= D(str(high)), state.persistence
    if case.drift_between is not None:
        low, high = case.drift_between
        assert D(str(low)) <= state.drift <= D(str(high)), state.drift


def test_a_reading_seen_twice_counts_once() -> None:
    state = feed(bursts(0.5), 3 * 3600)
    assert observe(state, state.seen_at, D(99999)) == state  # type: ignore[arg-type]
    assert observe(state, state.seen_at - timedelta(seconds=5), D(0)) == state  # type: ignore[operator]


def test_first_reading_sets_base_and_level() -> None:
    state = observe(Reversion(), NOW, D("812.5"))
    assert (state.base, state.level, state.pairs, state.seen_at) == (D("812.5"), D("812.5"), 0, NOW)


def test_negative_demand_is_refused() -> None:
    with pytest.raises(ValueError):
        observe(Reversion(), NOW, D(-1))


def test_state_stays_plain_decimals_of_bounded_precision() -> None:
    """Status keeps the state as decimal strings: it must survive str() and back unchanged."""
    state = feed(bursts(0.5), 86400)
    for value in (state.base, state.level, state.sxy, state.sxx, state.anchor_deviation, state.drift_sxy):
        assert D(str(value)) == value
        assert "E" not in str(value)
        assert -value.as_tuple().exponent <= 6  # type: ignore[operator]


def test_expected_demand_decays_from_the_deviation_to_the_base() -> None:
    state = Reversion(base=D(1000), level=D(1000), sxy=D(25), sxx=D(100), pairs=50)  # persistence 0.25
    assert state.expected(D(2000), D(0)) == D(2000)
    assert state.expected(D(2000), D(LAG_SECONDS)) == pytest.approx(D(1250))
    assert state.expected(D(2000), D(2 * LAG_SECONDS)) == pytest.approx(D("1062.5"))


# ---- decide()'s forecast stage -------------------------------------------------------------------------------

MIX = Demand(D(2000), D(400))  # the default spec breaks even near 554 tok/s at this mix
SPIKE = MIX.scaled(D(800) / MIX.total_tps)  # 800 tok/s: over break-even, one replica is the raw stage's choice


def reversion(persistence: str, level: int, base: int = 200, drift: str = "0.5", pairs: int = 200) -> Reversion:
    return Reversion(
        base=D(base),
        level=D(level),
        sxy=D(persistence) * 100,
        sxx=D(100),
        pairs=pairs,
        drift_sxy=D(drift) * 100,
        drift_sxx=D(100),
    )


@dataclass(frozen=True)
class StageCase:
    name: str
    reversion: Reversion
    demand: Demand = SPIKE
    spec: dict[str, Any] = field(default_factory=dict)
    current: int = 0
    replicas: int = 1
    reason: Reason = Reason.SELF_HOSTED_CHEAPER
    message: str | None = None  # in the forecast stage's message


STAGE_CASES = [
    StageCase("a short spike over break-even, low persistence, low level: waited out on the API",
              reversion("0.2", level=200), replicas=0, reason=Reason.PEAK_TOO_SHORT, message="not the $0.28"),
    StageCase("the same spike, persistent: the replica starts", reversion("0.95", level=200),
              message="expected to repay"),
    StageCase("a rise the base already follows (drift 1): the replica starts",
              reversion("0.2", level=200, base=800, drift="1"), message="expected to repay"),
    StageCase("a big enough spike repays even when it passes", reversion("0.2", level=200),
              demand=MIX.scaled(D(3000) / MIX.total_tps), message="expected to repay"),
    StageCase("a level self-hosting serves cheaper: no peak to wait out", reversion("0.2", level=900),
              message="self-hosting is the usual"),
    StageCase("untrusted forecast: no refusal", reversion("0.2", level=200, pairs=MIN_PAIRS - 1),
              message="not trusted yet"),
    StageCase("no cold start: nothing to repay", reversion("0.2", level=200), spec={"coldStartSeconds": 0},
              message="no cold start"),
]  # fmt: skip


@pytest.mark.parametrize("case", STAGE_CASES, ids=lambda c: c.name)
def test_forecast_stage(case: StageCase) -> None:
    spec = make_spec(**case.spec)
    snapshot = Snapshot(NOW, ReplicaState(case.current, case.current), case.demand)
    decision = decide(spec, snapshot, (), NOW, case.reversion)
    assert decision.replicas == case.replicas
    assert decision.reason is case.reason
    (forecast,) = [s for s in decision.stages if s.name is StageName.FORECAST]
    if case.message is not None:
        assert case.message in forecast.message
    if case.reason is Reason.PEAK_TOO_SHORT:
        assert decision.spill_fraction == 1  # the peak goes to the API
        assert decision.history[-1].replicas == case.current  # the refused count is what stabilisation sees


def test_no_forecast_is_todays_decision() -> None:
    """reversion=None: the pipeline without a forecast stage, the same Decision as before the forecast existed."""
    spec = make_spec()
    snapshot = Snapshot(NOW, ReplicaState(0, 0), SPIKE)
    without = decide(spec, snapshot, (), NOW)
    assert decide(spec, snapshot, (), NOW, None) == without
    assert without.replicas == 1 and without.reason is Reason.SELF_HOSTED_CHEAPER
    assert StageName.FORECAST not in {s.name for s in without.stages}
    refused = decide(spec, snapshot, (), NOW, reversion("0.2", level=200))
    assert refused.replicas == 0  # the same inputs with a forecast do differ


@pytest.mark.parametrize(
    "demand",
    [MIX.scaled(D(100) / MIX.total_tps), MIX.scaled(D(40000) / MIX.total_tps)],
    ids=["below break-even", "far above"],
)
def test_forecast_never_touches_a_scale_down_or_hold_on_lost_history(demand: Demand) -> None:
    """Without a history covering the down-window (a restart), the forecast changes no scale-down or hold: the
    trough stage acts only on what the window's own recommendations hold."""
    spec = make_spec()
    for current in (0, 3):
        snapshot = Snapshot(NOW, ReplicaState(current, current), demand)
        with_forecast = decide(spec, snapshot, (), NOW, reversion("0.2", level=200))
        without = decide(spec, snapshot, (), NOW)
        if with_forecast.recommended_replicas <= current:
            assert with_forecast == without


# ---- decide()'s trough stage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TroughCase:
    name: str
    reversion: Reversion
    demand: int  # tok/s now, at MIX: 3,000 is one replica's work, 11,000 two's
    held_since: int | None = 1000  # seconds ago the down-window's higher count was recommended (None: no history)
    current: int = 2
    spec: dict[str, Any] = field(default_factory=dict)
    replicas: int = 2
    reason: Reason = Reason.SCALE_DOWN_STABILIZING
    message: str | None = None  # in the trough stage's message; None: no trough stage


def usual(base: int, level: int, persistence: str = "0.5", pairs: int = 200) -> Reversion:
    return reversion(persistence, level=level, base=base, pairs=pairs)


TROUGH_CASES = [
    TroughCase("the base and the level need one replica: the second goes inside the window", usual(3000, 3000),
               3000, replicas=1, reason=Reason.TROUGH_REPAYS_RESTART, message="1 replica(s) inside the 900 s window"),
    TroughCase("the hour's base still needs two: the window holds", usual(11000, 3000), 3000,
               message="still needs 2 replica(s)"),
    TroughCase("the twelve-hour level still needs two: the window holds", usual(3000, 11000), 3000,
               message="still needs 2 replica(s)"),
    TroughCase("an untrusted forecast: the window holds", usual(3000, 3000, pairs=MIN_PAIRS - 1), 3000,
               message="not trusted yet"),
    TroughCase("a restart (history shorter than the window): never a scale-down", usual(3000, 3000), 3000,
               held_since=None),
    TroughCase("a dip that soon returns to a usual just below break-even: the window holds",
               usual(520, 520, persistence="0.2"), 300, current=1, replicas=1, message="does not repay"),
    TroughCase("the same dip, lasting: the replica goes", usual(520, 520, persistence="0.8"), 300, current=1,
               replicas=0, reason=Reason.TROUGH_REPAYS_RESTART, message="0 replica(s) inside"),
    TroughCase("no demand now: no mix to price the usual at", usual(3000, 3000), 0, message="no demand now"),
    TroughCase("the user's step limit still binds", usual(3000, 3000), 3000, current=3,
               spec={"policy.scaleDownMaxStep": 1}, replicas=2, reason=Reason.SCALE_DOWN_RATE_LIMITED,
               message="1 replica(s) inside the 900 s window"),
]  # fmt: skip


@pytest.mark.parametrize("case", TROUGH_CASES, ids=lambda c: c.name)
def test_trough_stage(case: TroughCase) -> None:
    spec = make_spec(**case.spec)
    demand = MIX.scaled(D(case.demand) / MIX.total_tps)
    history = (
        () if case.held_since is None else (Recommendation(NOW - timedelta(seconds=case.held_since), case.current),)
    )
    snapshot = Snapshot(NOW, ReplicaState(case.current, case.current), demand)
    decision = decide(spec, snapshot, history, NOW, case.reversion)
    assert decision.replicas == case.replicas
    assert decision.reason is case.reason
    troughs = [s for s in decision.stages if s.name is StageName.TROUGH]
    if case.message is None:
        assert troughs == []
    else:
        (trough,) = troughs
        assert case.message in trough.message
    if case.reason is Reason.TROUGH_REPAYS_RESTART:
        without = decide(spec, snapshot, history, NOW)
        assert without.replicas == case.current and without.reason is Reason.SCALE_DOWN_STABILIZING
