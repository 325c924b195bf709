"""What does this time of day usually bring? A daily profile of demand, learned over days, so decide() can start
replicas one cold start ahead of a ramp that comes every day instead of spilling while they warm.

The profile is `BINS` numbers: the mean demand of each hour of the day (UTC), each an average over days that weighs
the newest day by `DAY_WEIGHT` (a changed pattern is relearned within a few days). Between bin centres it is read
linearly, so `change(now, s)` is the rise the profile expects over the next `s` seconds.

A profile is only worth what it predicts. Every `LAG_SECONDS` the profile's expected change over the next
`LAG_SECONDS` is paired with the change that then happened, and `skill` is the regression slope of the second on
the first, less `CONFIDENCE_Z` standard errors, clamped to [0, 1]: the share of the profile's ramp that its own
track record supports with confidence. A trace whose short-term moves are not daily (bursts, a weekly pattern)
earns a skill near 0 and the profile then does nothing. Until `MIN_PAIRS` pairs exist (two days of them, after a
day to learn the first profile) the skill is 0: no history means no pre-warm, and decisions as without a profile.

`observe()` is pure (the state is the bins plus a dozen numbers, kept in status so a restart loses nothing); a
reading no newer than the last counts once; unknown demand must not be passed in (unknown is never zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from costpolicy.money import ONE, ZERO
from costpolicy.reversion import LAG_SECONDS

BINS = 24  # one mean per hour of the day: small enough to keep in status for a thousand resources
BIN_SECONDS = 86400 // BINS
DAY_WEIGHT = Decimal("0.3")  # the newest day's share of a bin's mean
MIN_COVERAGE = Decimal(BIN_SECONDS) / 2  # a bin seen for less than this (an operator down) teaches nothing
MAX_WEIGHT_SECONDS = Decimal(300)  # a reading stands for the time since the last one, at most this long
MIN_PAIRS = 2 * 86400 // LAG_SECONDS  # (prediction, outcome) pairs before the skill is trusted: two days
PAIR_MEMORY = Decimal(7 * 86400 // LAG_SECONDS)  # the skill's sums forget with this memory (a week of pairs)
CONFIDENCE_Z = Decimal(2)  # the skill is the slope less this many standard errors
MEAN_PLACES = Decimal("0.01")  # bin means to the hundredth of a token per second: compact strings in status
PLACES = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class DailyProfile:
    """The profile's state. Demand in tokens per second (input + output); sums in (tokens per second)²."""

    means: tuple[Decimal | None, ...] = (None,) * BINS  # per hour of the day (UTC); None: never seen long enough
    bin_start: datetime | None = None  # start of the bin being accumulated
    bin_sum: Decimal = ZERO  # demand × seconds in that bin so far
    bin_seconds: Decimal = ZERO  # seconds of it covered by readings
    sxy: Decimal = ZERO  # decayed Σ expected change × actual change over LAG_SECONDS
    sxx: Decimal = ZERO  # decayed Σ expected change²
    syy: Decimal = ZERO  # decayed Σ actual change²
    pairs: int = 0  # (expected, actual) pairs seen, ever
    anchor_at: datetime | None = None  # when the pending prediction was made
    anchor_demand: Decimal = ZERO  # demand then
    anchor_change: Decimal | None = None  # the profile's expected change then (None: the profile did not know)
    seen_at: datetime | None = None  # the newest reading observed (None: none yet)

    def __post_init__(self) -> None:
        if len(self.means) != BINS:
            raise ValueError(f"a daily profile has {BINS} bins, got {len(self.means)}")

    @property
    def trusted(self) -> bool:
        return self.pairs >= MIN_PAIRS and self.sxx > 0

    @property
    def skill(self) -> Decimal:
        """Share of the profile's expected change that its track record supports, in [0, 1]; 0 until trusted."""
        if not self.trusted:
            return ZERO
        keep = ONE - ONE / PAIR_MEMORY
        weight = (ONE - keep**self.pairs) / (ONE - keep)  # the decayed sums' effective number of pairs
        if weight <= 2:
            return ZERO
        slope = self.sxy / self.sxx
        residual = max(ZERO, self.syy - self.sxy * slope) / (weight - 1)
        error = (residual / self.sxx).sqrt()
        return min(ONE, max(ZERO, slope - CONFIDENCE_Z * error))

    def change(self, now: datetime, seconds: int) -> Decimal:
        """The change of demand from `now` to `seconds` later that the profile expects, weighed by its skill; 0 when
        it does not know (untrusted, or either hour never seen)."""
        skill = self.skill
        if skill <= 0:
            return ZERO
        expected = _change(self.means, now, seconds)
        return ZERO if expected is None else skill * expected

    def known_bins(self) -> int:
        return sum(mean is not None for mean in self.means)


def _seconds_of_day(now: datetime) -> int:
    utc = now.astimezone(UTC)
    return utc.hour * 3600 + utc.minute * 60 + utc.second


def _at(means: tuple[Decimal | None, ...], seconds_of_day: Decimal) -> Decimal | None:
    """The profile at a time of day, linear between bin centres; None when either neighbour is unknown."""
    position = seconds_of_day / BIN_SECONDS - Decimal("0.5")
    below = math.floor(position)
    before, after = means[below % BINS], means[(below + 1) % BINS]
    if before is None or after is None:
        return None
    return before + (after - before) * (position - below)


def _change(means: tuple[Decimal | None, ...], now: datetime, seconds: int) -> Decimal | None:
    start = Decimal(_seconds_of_day(now))
    now_value, later = _at(means, start), _at(means, (start + seconds) % 86400)
    return None if now_value is None or later is None else later - now_value


def _bin_start(now: datetime) -> datetime:
    utc = now.astimezone(UTC)
    midnight = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(seconds=_seconds_of_day(utc) // BIN_SECONDS * BIN_SECONDS)


def _closed(state: DailyProfile) -> DailyProfile:
    """The bin being accumulated folded into its hour's mean (if seen long enough), accumulators emptied."""
    means = state.means
    if state.bin_start is not None and state.bin_seconds >= MIN_COVERAGE:
        index = _seconds_of_day(state.bin_start) // BIN_SECONDS
        mean = state.bin_sum / state.bin_seconds
        old = means[index]
        new = mean if old is None else old + (mean - old) * DAY_WEIGHT
        means = (*means[:index], new.quantize(MEAN_PLACES), *means[index + 1 :])
    return replace(state, means=means, bin_sum=ZERO, bin_seconds=ZERO)


def observe(state: DailyProfile, now: datetime, demand_tps: Decimal) -> DailyProfile:
    """The state after one reading of demand (tokens per second, input + output) taken at `now`."""
    if demand_tps < 0:
        raise ValueError("demand cannot be negative")
    if state.seen_at is not None and now <= state.seen_at:
        return state
    demand = demand_tps.quantize(PLACES)
    weight = ZERO
    if state.seen_at is not None:
        weight = min(MAX_WEIGHT_SECONDS, Decimal((now - state.seen_at).total_seconds()).quantize(Decimal("0.001")))
    hour = _bin_start(now)
    new = state
    if new.bin_start != hour:
        new = replace(_closed(new), bin_start=hour)
    new = replace(
        new,
        bin_sum=(new.bin_sum + demand * weight).quantize(PLACES),
        bin_seconds=new.bin_seconds + weight,
        seen_at=now,
    )
    return _paired(new, now, demand)


def _paired(state: DailyProfile, now: datetime, demand: Decimal) -> DailyProfile:
    """Every LAG_SECONDS: score the pending prediction against what happened, then make the next one."""
    if state.anchor_at is not None and (now - state.anchor_at).total_seconds() < LAG_SECONDS:
        return state
    new = state
    fresh = state.anchor_at is not None and (now - state.anchor_at).total_seconds() < 2 * LAG_SECONDS
    if fresh and state.anchor_change is not None:
        keep = ONE - ONE / PAIR_MEMORY
        x, y = state.anchor_change, demand - state.anchor_demand
        new = replace(
            new,
            sxy=(state.sxy * keep + x * y).quantize(PLACES),
            sxx=(state.sxx * keep + x * x).quantize(PLACES),
            syy=(state.syy * keep + y * y).quantize(PLACES),
            pairs=state.pairs + 1,
        )
    change = _change(new.means, now, LAG_SECONDS)
    return replace(
        new, anchor_at=now, anchor_demand=demand, anchor_change=None if change is None else change.quantize(PLACES)
    )
