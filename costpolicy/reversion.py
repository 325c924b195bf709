"""How long does a peak last? A mean-reversion forecast of demand, learned from demand alone.

Demand is modelled on two time scales around a long level `L` (an EWMA over `LEVEL_SECONDS`, half a day): a base
`B` (an EWMA over `BASE_SECONDS`) that drifts back to the level, and a deviation `d − B` that decays back to the base:

    expected(t) = L + (B − L) · drift^(t / DRIFT_LAG_SECONDS) + (d − B) · persistence^(t / LAG_SECONDS)

`persistence` is the regression slope, through the origin, of the deviation `LAG_SECONDS` later on the deviation
now, over (anchor, later) pairs taken every `LAG_SECONDS`; `drift` is the same slope for `B − L` over every
`DRIFT_EVERY`-th anchor (`DRIFT_LAG_SECONDS` apart). Both sums forget old pairs with a memory of about a week, so a
changed traffic pattern is relearned. Until enough pairs exist a slope is 1: nothing is expected to revert, and
decide() plans as it would without a forecast.

`observe()` is pure: the state is a handful of numbers (so the operator keeps it in status and a restart loses
nothing), the time and the demand are passed in, and a reading seen twice (two reconciles on one Prometheus round)
counts once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from costpolicy.money import ONE, ZERO

BASE_SECONDS = Decimal(3600)  # the base a deviation reverts to: an hour's EWMA
LEVEL_SECONDS = Decimal(43200)  # the long level the base drifts back to: twelve hours' EWMA
LAG_SECONDS = 600  # a deviation now against the deviation this much later (about a cold start)
MIN_PAIRS = 12  # (anchor, later) pairs before the persistence is trusted: two hours of readings
DRIFT_EVERY = 12  # every this many anchors, a drift anchor: B − L against B − L DRIFT_LAG_SECONDS later
DRIFT_LAG_SECONDS = LAG_SECONDS * DRIFT_EVERY
MIN_DRIFT_PAIRS = 12  # drift pairs before the drift is trusted: a day of readings
PAIR_MEMORY = Decimal(1008)  # the sums forget with this memory, in pairs (a week of anchors)
MAX_GAP_SECONDS = Decimal(3600)  # a longer silence (an operator down) moves the averages as one hour would
PLACES = Decimal("0.000001")  # state is kept to the micro-token: bounded strings in status, same value after a restart


@dataclass(frozen=True, slots=True)
class Reversion:
    """The forecast's state. Demand in tokens per second (input + output); sums in (tokens per second)²."""

    base: Decimal = ZERO  # B: EWMA of demand over BASE_SECONDS
    level: Decimal = ZERO  # L: EWMA of demand over LEVEL_SECONDS
    sxy: Decimal = ZERO  # decayed Σ deviation(anchor) · deviation(anchor + LAG_SECONDS)
    sxx: Decimal = ZERO  # decayed Σ deviation(anchor)²
    pairs: int = 0  # (anchor, later) pairs seen, ever
    anchor_at: datetime | None = None  # when the pending anchor's deviation was taken
    anchor_deviation: Decimal = ZERO  # d − B then
    drift_sxy: Decimal = ZERO  # decayed Σ (B − L)(drift anchor) · (B − L)(next drift anchor)
    drift_sxx: Decimal = ZERO  # decayed Σ (B − L)(drift anchor)²
    drift_anchor: Decimal = ZERO  # B − L at the last drift anchor
    seen_at: datetime | None = None  # the newest reading observed (None: none yet)

    @property
    def trusted(self) -> bool:
        return self.pairs >= MIN_PAIRS and self.sxx > 0

    @property
    def persistence(self) -> Decimal:
        """Share of a deviation from the base left LAG_SECONDS later, in [0, 1]; 1 (nothing reverts) until
        trusted."""
        return _slope(self.sxy, self.sxx) if self.trusted else ONE

    @property
    def drift(self) -> Decimal:
        """Share of the base's distance from the level left DRIFT_LAG_SECONDS later, in [0, 1]; 1 until trusted."""
        trusted = self.pairs // DRIFT_EVERY > MIN_DRIFT_PAIRS and self.drift_sxx > 0
        return _slope(self.drift_sxy, self.drift_sxx) if trusted else ONE

    def expected(self, demand_tps: Decimal, seconds: Decimal) -> Decimal:
        """Expected demand `seconds` from now, given `demand_tps` now."""
        if seconds <= 0:
            return demand_tps
        base = self.level + (self.base - self.level) * _decayed(self.drift, seconds / DRIFT_LAG_SECONDS)
        return max(ZERO, base + (demand_tps - self.base) * _decayed(self.persistence, seconds / LAG_SECONDS))


def _slope(sxy: Decimal, sxx: Decimal) -> Decimal:
    return min(ONE, max(ZERO, sxy / sxx))


def _decayed(share: Decimal, lags: Decimal) -> Decimal:
    """share^lags for a share in [0, 1]."""
    if share >= ONE:
        return ONE
    if share <= 0:
        return ZERO
    return (share.ln() * lags).exp()


def _ewma(previous: Decimal, value: Decimal, seconds: Decimal, horizon: Decimal) -> Decimal:
    return (previous + (value - previous) * (ONE - (-seconds / horizon).exp())).quantize(PLACES)


def observe(state: Reversion, now: datetime, demand_tps: Decimal) -> Reversion:
    """The state after one reading of demand (tokens per second, input + output) taken at `now`. A reading no newer
    than the last one changes nothing; unknown demand must not be passed in (unknown is never zero)."""
    if demand_tps < 0:
        raise ValueError("demand cannot be negative")
    demand = demand_tps.quantize(PLACES)
    if state.seen_at is None:
        return Reversion(base=demand, level=demand, anchor_at=now, seen_at=now)
    if now <= state.seen_at:
        return state
    gap = min(MAX_GAP_SECONDS, Decimal((now - state.seen_at).total_seconds()))
    base = _ewma(state.base, demand, gap, BASE_SECONDS)
    level = _ewma(state.level, demand, gap, LEVEL_SECONDS)
    new = replace(state, base=base, level=level, seen_at=now)
    if state.anchor_at is not None and (now - state.anchor_at).total_seconds() < LAG_SECONDS:
        return new
    deviation = demand - base
    keep = ONE - ONE / PAIR_MEMORY
    x = state.anchor_deviation
    pairs = state.pairs + 1
    new = replace(
        new,
        sxy=(state.sxy * keep + x * deviation).quantize(PLACES),
        sxx=(state.sxx * keep + x * x).quantize(PLACES),
        pairs=pairs,
        anchor_at=now,
        anchor_deviation=deviation,
    )
    if pairs % DRIFT_EVERY:
        return new
    drift, previous = base - level, state.drift_anchor
    if pairs == DRIFT_EVERY:  # the first drift anchor: nothing to pair it with yet
        return replace(new, drift_anchor=drift)
    drift_keep = ONE - DRIFT_EVERY / PAIR_MEMORY
    return replace(
        new,
        drift_sxy=(state.drift_sxy * drift_keep + previous * drift).quantize(PLACES),
        drift_sxx=(state.drift_sxx * drift_keep + previous * previous).quantize(PLACES),
        drift_anchor=drift,
    )
