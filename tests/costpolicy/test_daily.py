"""The daily profile (costpolicy.daily) and decide()'s prewarm stage: a ramp that comes every day at the same time is
met by replicas started a cold start ahead of it; a profile that has not proved itself does nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costpolicy import Demand, Reason, ReplicaState, Snapshot, StageName, decide
from costpolicy.daily import BIN_SECONDS, BINS, MIN_PAIRS, DailyProfile, observe
from costpolicy.reversion import LAG_SECONDS
from tests.costpolicy.conftest import make_spec

D = Decimal
MIDNIGHT = datetime(2026, 11, 22, tzinfo=UTC)
STEP = 60  # seconds between readings: coarser than the operator's 30 s, same profile, half the test time
DAY = 86400


def feed(series: Callable[[int], float], seconds: int, state: DailyProfile | None = None) -> DailyProfile:
    """observe() every STEP seconds from MIDNIGHT, demand series(t) at t seconds."""
    state = state or DailyProfile()
    for t in range(0, seconds, STEP):
        state = observe(state, MIDNIGHT + timedelta(seconds=t), D(f"{series(t):.6f}"))
    return state


def office_hours(t: int) -> float:
    """300 tok/s at night, a ramp from 08:00 to 09:00 up to 3,000 tok/s until 18:00, a ramp down to 19:00."""
    hour = (t % DAY) / 3600
    if hour < 8 or hour >= 19:
        return 300.0
    if hour < 9:
        return 300 + 2700 * (hour - 8)
    if hour < 18:
        return 3000.0
    return 3000 - 2700 * (hour - 18)


def burst(t: int) -> float:
    """A step in [-1, 1] every 10 minutes that owes nothing to the time of day (seeded by the window)."""
    return random.Random(t // 600).uniform(-1, 1)


def noise(t: int) -> float:
    return 1000 + 800 * burst(t)


def office_hours_with_bursts(t: int) -> float:
    return max(0.0, office_hours(t) + 400 * burst(t))


@dataclass(frozen=True)
class ProfileCase:
    name: str
    series: Callable[[int], float]
    days: float
    trusted: bool
    skill_between: tuple[float, float] = (0, 1)


PROFILE_CASES = [
    ProfileCase("two days: the first profile, then too few pairs to trust", office_hours, 2, trusted=False,
                skill_between=(0, 0)),
    # the hourly profile blurs an hour's ramp over two, so even a clean ramp leaves a residual the skill discounts
    ProfileCase("a ramp every day: skilled from the third day", office_hours, 3.2, trusted=True,
                skill_between=(0.7, 1)),
    ProfileCase("the same ramp under bursts: still skilled", office_hours_with_bursts, 6, trusted=True,
                skill_between=(0.3, 1)),
    ProfileCase("bursts with no daily pattern: trusted, no skill", noise, 6, trusted=True, skill_between=(0, 0)),
    ProfileCase("constant demand: nothing to predict", lambda t: 700.0, 4, trusted=False, skill_between=(0, 0)),
]  # fmt: skip


@pytest.mark.parametrize("case", PROFILE_CASES, ids=lambda c: c.name)
def test_profile_skill(case: ProfileCase) -> None:
    state = feed(case.series, int(case.days * DAY))
    assert state.trusted is case.trusted
    low, high = case.skill_between
    assert D(str(low)) <= state.skill <= D(str(high)), state.skill


def test_an_hour_is_learned_when_it_ends_and_days_are_averaged() -> None:
    state = feed(lambda t: 1000.0, 3600 + STEP)
    assert state.means[0] == D(1000) and state.known_bins() == 1  # the hour from midnight, closed at 01:00
    assert state.means[1] is None  # 01:00 is still being accumulated
    next_day = feed(lambda t: 2000.0 if t >= DAY else 1000.0, DAY + 3600 + STEP)
    assert next_day.means[0] == D(1300)  # 1000 + 0.3 × (2000 - 1000): the newest day weighs DAY_WEIGHT


def test_an_hour_seen_for_less_than_half_teaches_nothing() -> None:
    state = observe(DailyProfile(), MIDNIGHT + timedelta(minutes=40), D(500))
    for minute in range(41, 62):  # readings only from 00:40: 20 minutes of hour 0
        state = observe(state, MIDNIGHT + timedelta(minutes=minute), D(500))
    assert state.means[0] is None


def test_a_silence_counts_for_at_most_a_few_minutes() -> None:
    state = observe(DailyProfile(), MIDNIGHT, D(100))
    state = observe(state, MIDNIGHT + timedelta(minutes=50), D(100))  # the operator was down for 50 minutes
    state = observe(state, MIDNIGHT + timedelta(minutes=61), D(100))
    assert state.means[0] is None  # 5 minutes counted, not 50: too little of the hour was seen


def test_a_reading_seen_twice_counts_once() -> None:
    state = feed(office_hours, DAY)
    assert state.seen_at is not None
    assert observe(state, state.seen_at, D(99999)) == state
    assert observe(state, state.seen_at - timedelta(seconds=5), D(0)) == state


def test_negative_demand_is_refused() -> None:
    with pytest.raises(ValueError):
        observe(DailyProfile(), MIDNIGHT, D(-1))


def test_state_stays_compact_decimal_strings() -> None:
    """Status keeps the profile as strings: means to the hundredth, sums to the millionth, no exponents."""
    state = feed(office_hours_with_bursts, 4 * DAY)
    assert state.known_bins() == BINS
    for mean in state.means:
        assert mean is not None and D(str(mean)) == mean and "E" not in str(mean)
        assert -mean.as_tuple().exponent <= 2  # type: ignore[operator]
    for value in (state.sxy, state.sxx, state.syy, state.bin_sum, state.anchor_demand):
        assert D(str(value)) == value and "E" not in str(value)


# ---- what the profile expects ---------------------------------------------------------------------------------


def skilled(means: list[int | None], skill: str = "1") -> DailyProfile:
    """A trusted profile with these hourly means and a track record whose slope is `skill`, without error."""
    return DailyProfile(
        means=tuple(None if m is None else D(m) for m in means),
        sxy=D(skill) * 100,
        sxx=D(100),
        syy=D(skill) ** 2 * 100,
        pairs=10 * MIN_PAIRS,
    )


RAMP = [300] * 8 + [6000, 12000] + [12000] * 14  # 08:00 averages the ramp; busy to midnight (simple)


def test_change_is_read_linearly_between_hour_centres() -> None:
    profile = skilled(RAMP)
    at_0830 = MIDNIGHT + timedelta(hours=8, minutes=30)  # the centre of hour 8
    assert profile.change(at_0830, 1800) == D(3000)  # halfway to the centre of hour 9
    assert profile.change(MIDNIGHT + timedelta(hours=3), 600) == 0  # a flat night
    assert profile.change(at_0830, 0) == 0
    assert skilled(RAMP, "0.5").change(at_0830, 1800) == D(1500)  # weighed by the skill
    assert skilled([None, *RAMP[1:]]).change(MIDNIGHT + timedelta(minutes=10), 600) == 0  # unknown neighbour
    assert skilled(RAMP).change(MIDNIGHT + timedelta(hours=23, minutes=50), 600) < 0  # midnight follows 23:00


def test_skill_is_the_slope_less_its_error() -> None:
    exact = skilled(RAMP, "0.8")
    assert exact.skill == D("0.8")
    noisy = replace(exact, syy=exact.syy + 500)  # residual variance: the slope is less certain
    assert 0 < noisy.skill < D("0.8")
    assert replace(exact, pairs=MIN_PAIRS - 1).skill == 0  # too few pairs: no skill at all
    assert replace(exact, sxy=D(-50)).skill == 0  # a profile that predicts the wrong way


# ---- decide()'s prewarm stage ----------------------------------------------------------------------------------

# the default spec at this mix: the first replica breaks even near 554 tok/s, the second near 10,000 (a replica
# serves 9,600 at the target utilisation); a new replica's cold start adds ~140 tok/s to either
MIX = Demand(D(2000), D(400))


def at(total: int) -> Demand:
    return MIX.scaled(D(total) / MIX.total_tps)


@dataclass(frozen=True)
class PrewarmCase:
    name: str
    profile: DailyProfile
    when: timedelta  # time of day
    demand: Demand
    current: int
    replicas: int
    reason: Reason
    message: str
    spec: dict[str, Any] = field(default_factory=dict)


RAMP_START = timedelta(hours=8, minutes=40)  # the profile rises 500 tok/s in the next 300 s (the cold start)
PREWARM_CASES = [
    PrewarmCase("a daily ramp a cold start ahead: start the replica now", skilled(RAMP), RAMP_START, at(400), 0,
                1, Reason.DAILY_RAMP, "starting 1 a cold start ahead of the daily ramp (+500 tok/s"),
    PrewarmCase("the ramp needs one more than the demand now", skilled(RAMP), RAMP_START, at(9800), 1, 2,
                Reason.DAILY_RAMP, "2 replica(s): starting 1 a cold start ahead"),
    PrewarmCase("a profile without skill expects nothing", skilled(RAMP, "0"), RAMP_START, at(400), 0, 0,
                Reason.API_CHEAPER, "no daily ramp expected"),
    PrewarmCase("a flat hour: nothing to pre-warm", skilled(RAMP), timedelta(hours=3), at(400), 0, 0,
                Reason.API_CHEAPER, "no daily ramp expected"),
    PrewarmCase("a ramp the running replica absorbs", skilled(RAMP), RAMP_START, at(1000), 1, 1,
                Reason.SELF_HOSTED_CHEAPER, "needs no more replicas"),
    PrewarmCase("the ramp down is not this stage's business", skilled(RAMP), timedelta(hours=23, minutes=50),
                at(400), 0, 0, Reason.API_CHEAPER, "no daily ramp expected"),
    PrewarmCase("a rise that saves less than the margin", skilled(RAMP, "0.64"), RAMP_START, at(400), 0, 0,
                Reason.API_CHEAPER, "only within the margin"),
    PrewarmCase("a rise that leaves the API cheaper", skilled(RAMP, "0.2"), RAMP_START, at(400), 0, 0,
                Reason.API_CHEAPER, "needs no more replicas"),
]  # fmt: skip


@pytest.mark.parametrize("case", PREWARM_CASES, ids=lambda c: c.name)
def test_prewarm_stage(case: PrewarmCase) -> None:
    spec = make_spec(**{"policy.scaleUpStabilizationSeconds": 0, **case.spec})
    now = MIDNIGHT + case.when
    snapshot = Snapshot(now, ReplicaState(case.current, case.current), case.demand)
    decision = decide(spec, snapshot, (), now, None, case.profile)
    assert decision.replicas == case.replicas
    assert decision.reason is case.reason
    (prewarm,) = [s for s in decision.stages if s.name is StageName.PREWARM]
    assert case.message in prewarm.message
    if case.reason is Reason.DAILY_RAMP:
        assert decision.history[-1].replicas == case.replicas  # the windows see the pre-warmed count
        without = decide(spec, snapshot, (), now)
        assert decision.spill_fraction == without.spill_fraction  # demand now is served as before while they warm


@pytest.mark.parametrize(
    "profile",
    [DailyProfile(), feed(office_hours, 2 * DAY), replace(skilled(RAMP), pairs=MIN_PAIRS - 1)],
    ids=["nothing learned", "two days learned", "one pair short"],
)
def test_an_untrusted_profile_decides_as_none(profile: DailyProfile) -> None:
    """No history means no pre-warm: the very same Decision as without a profile, stage list included."""
    spec = make_spec(**{"policy.scaleUpStabilizationSeconds": 0})
    now = MIDNIGHT + RAMP_START
    snapshot = Snapshot(now, ReplicaState(0, 0), at(400))
    assert decide(spec, snapshot, (), now, None, profile) == decide(spec, snapshot, (), now)


@pytest.mark.parametrize("overrides", [{"replicas.pinned": 0}, {"policy.mode": "APIOnly"}], ids=["pinned", "APIOnly"])
def test_prewarm_leaves_the_users_word_alone(overrides: dict[str, Any]) -> None:
    spec = make_spec(**overrides)
    now = MIDNIGHT + RAMP_START
    snapshot = Snapshot(now, ReplicaState(0, 0), at(400))
    decision = decide(spec, snapshot, (), now, None, skilled(RAMP))
    assert decision.replicas == 0 and StageName.PREWARM not in {s.name for s in decision.stages}


def test_the_profile_learned_from_a_daily_ramp_starts_replicas_before_it() -> None:
    """End to end in costpolicy: three days of office hours, then on the fourth morning the replica starts before
    demand alone would start it."""
    spec = make_spec(**{"policy.scaleUpStabilizationSeconds": 0})
    profile = feed(office_hours, 3 * DAY + 8 * 3600)  # up to 08:00 on the fourth day
    assert profile.skill > D("0.7")
    first_by_profile = first_by_demand = None
    for t in range(3 * DAY + 8 * 3600, 3 * DAY + 9 * 3600, 30):
        now = MIDNIGHT + timedelta(seconds=t)
        profile = observe(profile, now, D(office_hours(t)))
        snapshot = Snapshot(now, ReplicaState(0, 0), at(round(office_hours(t))))
        if first_by_profile is None and decide(spec, snapshot, (), now, None, profile).replicas > 0:
            first_by_profile = t
        if first_by_demand is None and decide(spec, snapshot, (), now).replicas > 0:
            first_by_demand = t
    assert first_by_profile is not None and first_by_demand is not None
    assert first_by_demand - first_by_profile >= 120  # minutes earlier, on a ramp that takes an hour


def test_bins_cover_the_day() -> None:
    assert BINS * BIN_SECONDS == DAY and LAG_SECONDS < BIN_SECONDS
