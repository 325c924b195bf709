"""decide(spec, snapshot, history, now) -> Decision: the whole policy, pure and deterministic.

The pipeline follows the HPA's (`convertDesiredReplicasWithRules`), priced in dollars:

1. raw: the replica count with the lowest hourly cost (replicas + overhead + API spill + amortised cold
   starts), subject to the API's token limit and the monthly budget; per mode for SelfHostedOnly/APIOnly;
2. margin: keep the current count unless the cheapest saves more than `breakEvenMargin` × the hourly cost
   of the replicas it would add or remove (hysteresis in dollars);
3. forecast (with a Reversion state only): refuse a scale-up past what the API serves cheaper when the peak is
   expected to end before the saving repays the new replicas' cold start (costpolicy.reversion);
4. prewarm (with a trusted DailyProfile only): plan for the demand this time of day brings one cold start ahead,
   so replicas are ready when a daily ramp arrives (costpolicy.daily);
5. stabilisation: scale up to the lowest count recommended over the up-window, down to the highest over the
   down-window (a window the history does not cover counts as "current": a restart never scales down);
6. trough (with a Reversion state only): let a scale-down the down-window holds go ahead when the forecast expects
   the usual demand to stay low long enough to repay restarting the replicas;
7. rate limits per decision; 8. clamp to replicas.min..max.

The spill fraction then follows from demand against the replicas that are ready and will stay.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from costpolicy.breakeven import break_even
from costpolicy.daily import DailyProfile
from costpolicy.decision import Action, Costs, Decision, Flags, Reason, Recommendation, Stage, StageName
from costpolicy.money import ONE, SECONDS_PER_HOUR, ZERO, ceil_int, fmt_money, quantize
from costpolicy.pricing import (
    Load,
    overhead_per_hour,
    per_million,
    plan_cost_per_hour,
    replica_cost_per_hour,
    replicas_to_serve,
    self_hosted_cost_per_hour,
)
from costpolicy.reversion import DRIFT_LAG_SECONDS, LAG_SECONDS, LEVEL_SECONDS, MIN_PAIRS, Reversion
from costpolicy.snapshot import Snapshot
from costpolicy.spec import CostSpec, PolicyMode

# Plans spilling within this share of the provider's token limit count as over it (headroom for bursts).
API_LIMIT_HEADROOM = Decimal("0.9")
# The forecast stage sums a peak's expected saving in steps this long, this far ahead at most.
FORECAST_STEP_SECONDS = 60
FORECAST_HORIZON_SECONDS = 6 * 3600


def decide(
    spec: CostSpec,
    snapshot: Snapshot,
    history: Sequence[Recommendation],
    now: datetime,
    reversion: Reversion | None = None,
    profile: DailyProfile | None = None,
) -> Decision:
    """Decide replicas and spill for one deployment at `now`. Same inputs, same Decision.

    `reversion` is the demand forecast's state (costpolicy.reversion.observe, fed by the caller); None: no forecast
    or trough stage, decisions as without one. `profile` is the daily profile (costpolicy.daily.observe); None or not
    yet trusted: no prewarm stage."""
    current = snapshot.replicas.current
    demand = snapshot.demand
    if demand is None:
        return _hold(spec, snapshot, history, now, Reason.METRICS_UNAVAILABLE, "metrics could not be read")
    age = (now - snapshot.observed_at).total_seconds()
    if age > spec.policy.metrics_max_age_seconds:
        return _hold(
            spec,
            snapshot,
            history,
            now,
            Reason.METRICS_STALE,
            f"newest metrics are {int(age)}s old (limit {spec.policy.metrics_max_age_seconds}s)",
        )

    load = Load.of(spec, demand)
    api = _APIAllowance.of(spec, snapshot, load, now)
    raw, token_limited = _raw_stage(spec, snapshot, load, api)
    stages: list[Stage] = [raw]
    rec = raw.replicas
    cost_mode = spec.policy.mode in (PolicyMode.COST_OPTIMIZED, PolicyMode.ADVISORY)
    if cost_mode and spec.replicas.pinned is None and rec != current:
        stages.append(_margin_stage(spec, snapshot, load, api, rec))
        rec = stages[-1].replicas
    if cost_mode and reversion is not None and raw.reason is Reason.SELF_HOSTED_CHEAPER and rec > current:
        stages.append(payback_stage(spec, snapshot, load, api, reversion, rec))
        rec = stages[-1].replicas
    if cost_mode and spec.replicas.pinned is None and profile is not None and profile.trusted:
        stages.append(prewarm_stage(spec, snapshot, load, api, profile, now, rec))
        rec = stages[-1].replicas
    new_history = _record(history, rec, now, _longest_window(spec))
    if spec.replicas.pinned is None:  # a pin is the user's explicit word: no windows, no rate limits
        stages.append(_stabilize(spec, new_history, current, rec, now))
        held = stages[-1].replicas
        window = spec.policy.scale_down_stabilization_seconds
        if cost_mode and reversion is not None and rec < held and _window_values(new_history, now, window)[1]:
            stages.append(trough_stage(spec, load, api, reversion, rec, held))
        stages.append(_rate_limit(spec, current, stages[-1].replicas))
    stages.append(_clamp(spec, stages[-1].replicas))
    final = stages[-1].replicas

    spill, spill_note = _spill(spec, snapshot, load, final, api)
    deciding = _deciding_stage(stages)
    message = deciding.message + (f"; {spill_note}" if spill_note else "")
    return Decision(
        time=now,
        mode=spec.policy.mode,
        current_replicas=current,
        replicas=final,
        recommended_replicas=raw.replicas,
        spill_fraction=spill,
        action=_action(current, final),
        reason=deciding.reason,
        message=message,
        actuate=spec.policy.mode is not PolicyMode.ADVISORY,
        stages=tuple(stages),
        costs=_costs(spec, load, final, spill),
        flags=Flags(
            metrics_available=True,
            capacity_limited=snapshot.replicas.unschedulable > 0 or _beyond_max(spec, load, final),
            budget_exceeded=api.budget_exhausted,
            api_rate_limited=api.throttled or token_limited,
            spilling=spill > 0,
        ),
        history=new_history,
    )


@dataclass(frozen=True, slots=True)
class _APIAllowance:
    """How much the API may take right now: its token limit, the budget's pace, provider throttling; and so the
    largest share of this decision's demand it may take, in [0, 1]."""

    max_tps: Decimal | None
    max_dollars_per_hour: Decimal | None
    budget_exhausted: bool
    throttled: bool
    max_spill: Decimal

    @property
    def available(self) -> bool:
        return not (self.budget_exhausted or self.throttled)

    @classmethod
    def of(cls, spec: CostSpec, snapshot: Snapshot, load: Load, now: datetime) -> _APIAllowance:
        demand = load.demand
        max_tps = None
        if spec.api_limits.tokens_per_minute is not None:
            max_tps = Decimal(spec.api_limits.tokens_per_minute) * API_LIMIT_HEADROOM / 60
        if (
            spec.api_limits.requests_per_minute is not None
            and demand.requests_per_second
            and demand.requests_per_second > 0
        ):
            tokens_per_request = demand.total_tps / demand.requests_per_second
            by_requests = Decimal(spec.api_limits.requests_per_minute) * API_LIMIT_HEADROOM / 60 * tokens_per_request
            max_tps = by_requests if max_tps is None else min(max_tps, by_requests)
        pace = None
        exhausted = False
        budget = spec.policy.budget.api_per_month
        if budget is not None:
            remaining = budget - (snapshot.api_spend_this_month or ZERO)
            exhausted = remaining <= 0
            pace = max(ZERO, remaining) / _hours_left_in_month(now)
        available = not (exhausted or snapshot.api_throttled)
        share = ONE if available else ZERO
        if available and demand.total_tps > 0:
            if max_tps is not None:
                share = min(share, max_tps / demand.total_tps)
            full = load.api_per_second * SECONDS_PER_HOUR
            if pace is not None and full > 0:
                share = min(share, pace / full)
            share = max(ZERO, share)
        return cls(max_tps, pace, exhausted, snapshot.api_throttled, share)


def _hours_left_in_month(now: datetime) -> Decimal:
    now_utc = now.astimezone(UTC)
    days = calendar.monthrange(now_utc.year, now_utc.month)[1]
    month_end = now_utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)
    return max(Decimal(1) / 60, Decimal((month_end - now_utc).total_seconds()) / SECONDS_PER_HOUR)


def _beyond_max(spec: CostSpec, load: Load, final: int) -> bool:
    """replicas.max binds: demand needs more replicas than may exist (not when the API is the plan)."""
    if spec.policy.mode is PolicyMode.API_ONLY or final < spec.replicas.max:
        return False
    return _self_host_all(spec, load) > spec.replicas.max


def _self_host_all(spec: CostSpec, load: Load) -> int:
    return replicas_to_serve(load.busy, spec.policy.target_utilization)


def _raw_stage(spec: CostSpec, snapshot: Snapshot, load: Load, api: _APIAllowance) -> tuple[Stage, bool]:
    """The cheapest count the API's allowance permits, and whether the token limit alone moved it."""
    mode = spec.policy.mode
    if spec.replicas.pinned is not None:
        pinned = spec.replicas.pinned
        return Stage(StageName.RAW, pinned, Reason.PINNED, f"pinned at {pinned} replica(s)"), False
    if mode is PolicyMode.API_ONLY:
        return Stage(StageName.RAW, 0, Reason.API_ONLY, "APIOnly mode: all traffic goes to the API"), False
    if mode is PolicyMode.SELF_HOSTED_ONLY:
        need = _self_host_all(spec, load)
        why = f"SelfHostedOnly mode: {need} replica(s) serve all demand"
        return Stage(StageName.RAW, need, Reason.SELF_HOSTED_ONLY, why), False
    if load.demand.total_tps <= 0:
        return Stage(StageName.RAW, 0, Reason.NO_DEMAND, "no demand: no replica is worth paying for"), False

    best_free = _cheapest(spec, load, snapshot.replicas.billed, ONE)
    best = _cheapest(spec, load, snapshot.replicas.billed, api.max_spill)
    if best is None:  # even replicas.max cannot absorb what the API may not take
        reason, why = _constraint_reason(api, token_limited=False)
        need = _self_host_all(spec, load)
        return Stage(StageName.RAW, need, reason, f"{why}: needs more than replicas.max ({spec.replicas.max})"), False
    n, cost = best
    if best_free is not None and best_free[0] != n:
        token_limited = api.available and api.max_tps is not None
        reason, why = _constraint_reason(api, token_limited)
        message = (
            f"{why}: {n} replica(s) at {fmt_money(cost)}/h (cheapest unconstrained: "
            f"{best_free[0]} at {fmt_money(best_free[1])}/h)"
        )
        return Stage(StageName.RAW, n, reason, message), token_limited
    if n == 0:
        api_hour = load.api_per_second * SECONDS_PER_HOUR
        return Stage(
            StageName.RAW, 0, Reason.API_CHEAPER, f"API cheaper: {fmt_money(api_hour)}/h for all demand"
        ), False
    at_max = " (replicas.max reached)" if n == spec.replicas.max and _beyond_max(spec, load, n) else ""
    message = f"self-hosting cheaper: {n} replica(s) at {fmt_money(cost)}/h{at_max}"
    return Stage(StageName.RAW, n, Reason.SELF_HOSTED_CHEAPER, message), False


def _constraint_reason(api: _APIAllowance, token_limited: bool) -> tuple[Reason, str]:
    if api.budget_exhausted:
        return Reason.BUDGET_EXCEEDED, "API budget exhausted this month, self-hosting instead"
    if api.throttled:
        return Reason.API_RATE_LIMITED, "API is throttling requests, self-hosting instead"
    if token_limited:
        return Reason.API_RATE_LIMITED, "API token limit would be exceeded, self-hosting more"
    return Reason.BUDGET_EXCEEDED, "API spend paced to last the monthly budget, self-hosting more"


def _cheapest(spec: CostSpec, load: Load, billed: int, max_spill: Decimal) -> tuple[int, Decimal] | None:
    """The cheapest replica count whose spill the API may take (ties go to fewer replicas).

    Only counts demand can use are priced: past the count that serves all of it, each replica adds cost and saves
    nothing, and below the count whose spill the API may take nothing is allowed. So the work follows demand, never
    replicas.max (a max of 2**62 once kept a worker busy for good).
    """
    u = spec.policy.target_utilization
    top = min(spec.replicas.max, _self_host_all(spec, load))
    lowest = 0 if max_spill >= ONE else max(0, ceil_int((ONE - max_spill) * load.busy / u) - 1)
    best: tuple[int, Decimal] | None = None
    for n in range(min(lowest, top), top + 1):
        if load.spill(spec, n) > max_spill:
            continue
        cost = plan_cost_per_hour(spec, load, n, billed_now=billed)
        if best is None or cost < best[1]:
            best = (n, cost)
    return best


def _margin_stage(spec: CostSpec, snapshot: Snapshot, load: Load, api: _APIAllowance, rec: int) -> Stage:
    current = snapshot.replicas.current
    billed = snapshot.replicas.billed
    if current > spec.replicas.max or load.spill(spec, current) > api.max_spill:
        return Stage(StageName.MARGIN, rec, Reason.UNCHANGED, "current replicas not allowed; margin not applied")
    now_cost = plan_cost_per_hour(spec, load, current, billed_now=billed)
    best_cost = plan_cost_per_hour(spec, load, rec, billed_now=billed)
    # a change must save more than `margin` × the cost of the replicas it adds or removes: the band is in
    # dollars of the decision itself, so it stays as tight at 50 replicas of spill as at one
    changed = abs(rec - current) * replica_cost_per_hour(spec)
    if min(rec, current) == 0:
        changed += overhead_per_hour(spec)
    saving = now_cost - best_cost
    if saving <= spec.policy.break_even_margin * changed:
        return Stage(
            StageName.MARGIN,
            current,
            Reason.WITHIN_MARGIN,
            f"keeping {current} replica(s): {rec} would save {fmt_money(saving)}/h, not more than "
            f"{quantize(spec.policy.break_even_margin * 100, 1)}% of the {fmt_money(changed)}/h it changes",
        )
    return Stage(
        StageName.MARGIN, rec, Reason.BEYOND_MARGIN, f"{rec} replica(s) beat {current} by more than the margin"
    )


def payback_stage(
    spec: CostSpec, snapshot: Snapshot, load: Load, api: _APIAllowance, reversion: Reversion, rec: int
) -> Stage:
    """The forecast: a scale-up from `current` to `rec` goes ahead only if the peak asking for it is expected to last
    long enough for its saving (the steady hourly cost at `current` minus at `rec` at the expected demand, summed
    from the end of the cold start for as long as it stays positive) to repay what the new replicas, and the overhead
    when none runs yet, cost while they warm up and serve nothing. It applies only when the long level is a demand
    at which `replicas.min` replicas and the API are the cheaper plan (steady state): then demand above it is a peak
    to wait out, not the usual; where self-hosting is the usual, scale-ups are the raw stage's alone."""
    current, billed = snapshot.replicas.current, snapshot.replicas.billed
    if not reversion.trusted:
        why = f"forecast not trusted yet ({reversion.pairs} of {MIN_PAIRS} demand pairs)"
        return Stage(StageName.FORECAST, rec, Reason.UNCHANGED, why)
    if load.spill(spec, current) > api.max_spill:
        return Stage(StageName.FORECAST, rec, Reason.UNCHANGED, "the API may not take what current replicas leave")
    hours = int(LEVEL_SECONDS) // 3600
    level = quantize(reversion.level, 0)
    level_best = _cheapest(spec, _rescaled(spec, load, reversion.level), spec.replicas.max, ONE)
    if level_best is None or level_best[0] > spec.replicas.min:
        need = "more than replicas.max" if level_best is None else f"{level_best[0]} replica(s)"
        why = f"the {hours} h level ({level} tok/s) is best served by {need}: self-hosting is the usual, not a peak"
        return Stage(StageName.FORECAST, rec, Reason.UNCHANGED, why)
    new = max(0, rec - billed)
    cold = Decimal(spec.cold_start_seconds)
    warming = (new * replica_cost_per_hour(spec) + (overhead_per_hour(spec) if billed == 0 else ZERO)) * cold
    warming /= SECONDS_PER_HOUR
    if warming <= 0:
        return Stage(StageName.FORECAST, rec, Reason.UNCHANGED, "no cold start to repay")
    total = load.demand.total_tps
    step = Decimal(FORECAST_STEP_SECONDS)
    saving, t = ZERO, cold
    while saving <= warming and t < FORECAST_HORIZON_SECONDS:
        ahead = _rescaled(spec, load, reversion.expected(total, t))
        hourly = _steady_cost(spec, ahead, current) - _steady_cost(spec, ahead, rec)
        if hourly <= 0:
            break
        saving += hourly * step / SECONDS_PER_HOUR
        t += step
    trend = (
        f"persistence {quantize(reversion.persistence, 2)} per {LAG_SECONDS} s, drift {quantize(reversion.drift, 2)} "
        f"per {DRIFT_LAG_SECONDS} s towards the {hours} h level of {level} tok/s"
    )
    if saving > warming:
        why = f"the peak is expected to repay the {fmt_money(warming)} cold start ({trend})"
        return Stage(StageName.FORECAST, rec, Reason.UNCHANGED, why)
    return Stage(
        StageName.FORECAST,
        current,
        Reason.PEAK_TOO_SHORT,
        f"keeping {current} replica(s): {rec} would save {fmt_money(saving)} over the expected peak, not the "
        f"{fmt_money(warming)} {new} new replica(s) cost while warming ({trend})",
    )


def prewarm_stage(
    spec: CostSpec, snapshot: Snapshot, load: Load, api: _APIAllowance, profile: DailyProfile, now: datetime, rec: int
) -> Stage:
    """The daily profile: plan now for the demand expected one cold start ahead (demand now plus the rise this time
    of day brings, weighed by the profile's skill), so replicas started now are ready when the ramp arrives instead
    of warming while it spills. The count at that demand must beat `rec` by the margin, as the raw and margin
    stages would ask when the ramp is there. Only raises the count: a fall is the other stages' business."""
    cold = spec.cold_start_seconds
    skill = quantize(profile.skill, 2)
    change = profile.change(now, cold)
    total = load.demand.total_tps
    if change <= 0 or total <= 0:
        why = f"no daily ramp expected in the next {cold} s (profile skill {skill})"
        return Stage(StageName.PREWARM, rec, Reason.UNCHANGED, why)
    ahead = _rescaled(spec, load, total + change)
    billed = snapshot.replicas.billed
    best = _cheapest(spec, ahead, billed, api.max_spill)
    rise = f"+{quantize(change, 0)} tok/s in the next {cold} s at this time of day (profile skill {skill})"
    if best is None or best[0] <= rec:
        return Stage(StageName.PREWARM, rec, Reason.UNCHANGED, f"the daily ramp ({rise}) needs no more replicas")
    n, cost = best
    changed = (n - rec) * replica_cost_per_hour(spec) + (overhead_per_hour(spec) if rec == 0 else ZERO)
    saving = plan_cost_per_hour(spec, ahead, rec, billed_now=billed) - cost
    if saving <= spec.policy.break_even_margin * changed:
        why = f"the daily ramp ({rise}) makes {n} replica(s) cheaper only within the margin"
        return Stage(StageName.PREWARM, rec, Reason.UNCHANGED, why)
    why = f"{n} replica(s): starting {n - rec} a cold start ahead of the daily ramp ({rise})"
    return Stage(StageName.PREWARM, n, Reason.DAILY_RAMP, why)


def trough_stage(spec: CostSpec, load: Load, api: _APIAllowance, reversion: Reversion, rec: int, held: int) -> Stage:
    """The forecast, on a scale-down the down-window holds at `held`: the replicas above `rec` served a peak that is
    over when the one-hour base and the twelve-hour level are both demands that fewer replicas serve cheaper (steady
    state). Then the lowest such count goes ahead inside the window if the expected trough repays a restart: its
    hourly saving beyond the margin band (the margin stage's `breakEvenMargin` × the hourly cost of the replicas
    removed), summed in 60 s steps for as long as it stays positive (6 h at most), must exceed what restarting them
    would cost when demand returns: their cold start, plus the overhead when none would run, plus the spill while
    they warm. Where the usual still needs the held replicas, the window keeps its meaning."""
    if not reversion.trusted:
        why = f"forecast not trusted yet ({reversion.pairs} of {MIN_PAIRS} demand pairs)"
        return Stage(StageName.TROUGH, held, Reason.UNCHANGED, why)
    total = load.demand.total_tps
    if total <= 0:
        return Stage(StageName.TROUGH, held, Reason.UNCHANGED, "no demand now: no mix to price the usual demand at")
    hours = int(LEVEL_SECONDS) // 3600
    base, level = quantize(reversion.base, 0), quantize(reversion.level, 0)
    usual = max(
        _usual_count(spec, load, api, reversion.base, held), _usual_count(spec, load, api, reversion.level, held)
    )
    if usual >= held:
        why = f"the 1 h base ({base} tok/s) or the {hours} h level ({level} tok/s) still needs {held} replica(s)"
        return Stage(StageName.TROUGH, held, Reason.UNCHANGED, why)
    cold = Decimal(spec.cold_start_seconds)
    step = Decimal(FORECAST_STEP_SECONDS)
    for lower in range(max(rec, usual), held):
        if load.spill(spec, lower) > api.max_spill:
            continue
        removed = (held - lower) * replica_cost_per_hour(spec) + (overhead_per_hour(spec) if lower == 0 else ZERO)
        band = spec.policy.break_even_margin * removed
        restart = removed * cold / SECONDS_PER_HOUR
        saving, t = ZERO, ZERO
        while t < FORECAST_HORIZON_SECONDS:
            ahead = _rescaled(spec, load, reversion.expected(total, t))
            hourly = _steady_cost(spec, ahead, held) - _steady_cost(spec, ahead, lower) - band
            if hourly <= 0:
                break
            saving += hourly * step / SECONDS_PER_HOUR
            t += step
        if t < FORECAST_HORIZON_SECONDS:  # the trough is expected to end: the restart warms while demand spills
            for _ in range(ceil_int(cold / step)):
                ahead = _rescaled(spec, load, reversion.expected(total, t))
                spilled = _steady_cost(spec, ahead, lower) - _steady_cost(spec, ahead, held)
                restart += max(ZERO, spilled) * step / SECONDS_PER_HOUR
                t += step
        if saving > restart:
            return Stage(
                StageName.TROUGH,
                lower,
                Reason.TROUGH_REPAYS_RESTART,
                f"{lower} replica(s) inside the {spec.policy.scale_down_stabilization_seconds} s window: the 1 h base "
                f"({base} tok/s) and the {hours} h level ({level} tok/s) need no more, and the expected trough saves "
                f"{fmt_money(saving)}, more than the {fmt_money(restart)} a restart would cost",
            )
    why = f"the expected trough does not repay restarting {held - max(rec, usual)} replica(s)"
    return Stage(StageName.TROUGH, held, Reason.UNCHANGED, why)


def _usual_count(spec: CostSpec, load: Load, api: _APIAllowance, demand_tps: Decimal, held: int) -> int:
    """The count that serves `demand_tps` (at the mix of `load`) cheapest in steady state, with `held` running."""
    best = _cheapest(spec, _rescaled(spec, load, demand_tps), held, api.max_spill)
    return spec.replicas.max + 1 if best is None else best[0]


def _rescaled(spec: CostSpec, load: Load, total_tps: Decimal) -> Load:
    """`load` at another total rate, same input/output mix."""
    current = load.demand.total_tps
    if current <= 0:
        return load
    return Load.of(spec, load.demand.scaled(total_tps / current))


def _steady_cost(spec: CostSpec, load: Load, replicas: int) -> Decimal:
    """Hourly cost of `replicas` already running (no cold start) serving `load`, the rest spilled."""
    return plan_cost_per_hour(spec, load, replicas, billed_now=replicas)


def _longest_window(spec: CostSpec) -> int:
    return max(spec.policy.scale_up_stabilization_seconds, spec.policy.scale_down_stabilization_seconds)


def _record(history: Sequence[Recommendation], rec: int, now: datetime, window: int) -> tuple[Recommendation, ...]:
    """Append `rec` if it differs from the last entry; drop entries wholly older than the longest window."""
    entries = list(history)
    if not entries or entries[-1].replicas != rec:
        entries.append(Recommendation(now, rec))
    horizon = now - timedelta(seconds=window)
    # entry i is in force until entry i+1 starts: keep it while that end lies inside the window
    first = 0
    while first + 1 < len(entries) and entries[first + 1].since <= horizon:
        first += 1
    return tuple(entries[first:])


def _window_values(history: Sequence[Recommendation], now: datetime, seconds: int) -> tuple[list[int], bool]:
    """Recommendations in force during the last `seconds`, and whether the history covers the whole window."""
    start = now - timedelta(seconds=seconds)
    values = [
        entry.replicas for i, entry in enumerate(history) if i + 1 >= len(history) or history[i + 1].since > start
    ]
    covered = bool(history) and history[0].since <= start
    return values, covered


def _stabilize(spec: CostSpec, history: Sequence[Recommendation], current: int, rec: int, now: datetime) -> Stage:
    if rec > current:
        values, _ = _window_values(history, now, spec.policy.scale_up_stabilization_seconds)
        target = max(current, min(values))
        if target < rec:
            return Stage(
                StageName.STABILIZATION,
                target,
                Reason.SCALE_UP_STABILIZING,
                f"scale-up to {rec} held at {target}: lower counts recommended in the last "
                f"{spec.policy.scale_up_stabilization_seconds}s",
            )
    elif rec < current:
        values, covered = _window_values(history, now, spec.policy.scale_down_stabilization_seconds)
        if not covered:
            values.append(current)  # unknown past (a restart): never scale down on lost history
        target = min(current, max(values))
        if target > rec:
            return Stage(
                StageName.STABILIZATION,
                target,
                Reason.SCALE_DOWN_STABILIZING,
                f"scale-down to {rec} held at {target}: higher counts recommended in the last "
                f"{spec.policy.scale_down_stabilization_seconds}s",
            )
    return Stage(StageName.STABILIZATION, rec, Reason.UNCHANGED, "stable")


def _rate_limit(spec: CostSpec, current: int, target: int) -> Stage:
    up = max(spec.policy.scale_up_max_step, current)
    if target > current + up:
        return Stage(
            StageName.RATE_LIMIT,
            current + up,
            Reason.SCALE_UP_RATE_LIMITED,
            f"scale-up to {target} limited to +{up} per decision",
        )
    down = spec.policy.scale_down_max_step
    if down is not None and target < current - down:
        return Stage(
            StageName.RATE_LIMIT,
            current - down,
            Reason.SCALE_DOWN_RATE_LIMITED,
            f"scale-down to {target} limited to -{down} per decision",
        )
    return Stage(StageName.RATE_LIMIT, target, Reason.UNCHANGED, "within rate limits")


def _clamp(spec: CostSpec, target: int) -> Stage:
    bounds = spec.replicas
    if target < bounds.min:
        return Stage(StageName.CLAMP, bounds.min, Reason.CLAMPED_TO_MIN, f"raised to replicas.min ({bounds.min})")
    if target > bounds.max:
        return Stage(StageName.CLAMP, bounds.max, Reason.CLAMPED_TO_MAX, f"capped at replicas.max ({bounds.max})")
    return Stage(StageName.CLAMP, target, Reason.UNCHANGED, "within replicas.min..max")


def _deciding_stage(stages: Sequence[Stage]) -> Stage:
    """The last stage that changed the count names the reason; with no change after it, the raw stage does."""
    deciding = stages[0]
    for before, after in itertools.pairwise(stages):
        if after.replicas != before.replicas:
            deciding = after
    return deciding


def _spill(spec: CostSpec, snapshot: Snapshot, load: Load, final: int, api: _APIAllowance) -> tuple[Decimal, str]:
    """Share of demand to send to the API now, and a note saying why, given who is ready to serve."""
    mode = spec.policy.mode
    if mode is PolicyMode.SELF_HOSTED_ONLY:
        return ZERO, ""
    if mode is PolicyMode.API_ONLY:
        return (ONE, "") if api.available else (ZERO, "API unavailable: queueing on self-hosted")
    serving = min(snapshot.replicas.ready, final)
    if load.busy <= 0:
        spill = ONE if serving == 0 else ZERO
    else:
        planned = load.spill(spec, final)  # beyond what we pay for: cost or replicas.max
        actual = load.spill(spec, serving)  # plus what is warming or unschedulable
        spill = actual
        if not spec.policy.spill.on_cold_start:
            spill = planned
        if not spec.policy.spill.on_saturation and final >= spec.replicas.max:
            spill = max(ZERO, spill - load.spill(spec, spec.replicas.max))
    notes = []
    limit = min(spec.policy.spill.max_fraction, api.max_spill)
    if spill > limit:
        notes.append(f"spill capped at {quantize(limit * 100, 1)}%")
        spill = limit
    if spill > 0:
        notes.insert(0, f"spilling {quantize(spill * 100, 1)}% to the API")
    if snapshot.replicas.unschedulable:
        notes.append(f"{snapshot.replicas.unschedulable} replica(s) cannot be scheduled")
    if snapshot.replicas.warming:
        notes.append(f"{snapshot.replicas.warming} replica(s) warming up")
    return spill, ", ".join(notes)


def _costs(spec: CostSpec, load: Load, replicas: int, spill: Decimal) -> Costs:
    demand, api_per_s = load.demand, load.api_per_second
    self_hourly = self_hosted_cost_per_hour(spec, replicas)
    self_tps = (1 - spill) * demand.total_tps
    entry = None
    if demand.total_tps > 0:
        mix = break_even(spec, demand.input_tps, demand.output_tps, max_points=1).entry
        entry = None if mix is None else mix.tokens_per_second
    return Costs(
        replica_per_hour=replica_cost_per_hour(spec),
        overhead_per_hour=overhead_per_hour(spec),
        api_per_million_tokens=per_million(api_per_s, demand.total_tps),
        self_hosted_per_million_tokens=per_million(self_hourly / SECONDS_PER_HOUR, self_tps) if replicas > 0 else None,
        break_even_tokens_per_second=entry,
        self_hosted_hourly=self_hourly,
        api_hourly=spill * api_per_s * SECONDS_PER_HOUR,
    )


def _action(current: int, final: int) -> Action:
    if final > current:
        return Action.SCALE_UP
    if final < current:
        return Action.SCALE_DOWN
    return Action.HOLD


def _hold(
    spec: CostSpec,
    snapshot: Snapshot,
    history: Sequence[Recommendation],
    now: datetime,
    reason: Reason,
    why: str,
) -> Decision:
    """Missing or stale metrics: keep replicas (within bounds) and the router's current spill, say so."""
    current = snapshot.replicas.current
    final = min(max(current, spec.replicas.min), spec.replicas.max)
    if spec.policy.mode is PolicyMode.SELF_HOSTED_ONLY:
        spill = ZERO
    elif spec.policy.mode is PolicyMode.API_ONLY or snapshot.replicas.ready == 0:
        spill = ONE  # nothing can serve: the router sends everything to the API anyway
    else:
        spill = snapshot.current_spill_fraction if snapshot.current_spill_fraction is not None else ZERO
    message = f"holding {final} replica(s): {why}"
    stage = Stage(StageName.RAW, final, reason, message)
    return Decision(
        time=now,
        mode=spec.policy.mode,
        current_replicas=current,
        replicas=final,
        recommended_replicas=final,
        spill_fraction=spill,
        action=_action(current, final),
        reason=reason,
        message=message,
        actuate=spec.policy.mode is not PolicyMode.ADVISORY,
        stages=(stage,),
        costs=Costs(
            replica_per_hour=replica_cost_per_hour(spec),
            overhead_per_hour=overhead_per_hour(spec),
            api_per_million_tokens=None,
            self_hosted_per_million_tokens=None,
            break_even_tokens_per_second=None,
            self_hosted_hourly=self_hosted_cost_per_hour(spec, final),
            api_hourly=ZERO,
        ),
        flags=Flags(
            metrics_available=False,
            capacity_limited=snapshot.replicas.unschedulable > 0,
            budget_exceeded=False,
            api_rate_limited=snapshot.api_throttled,
            spilling=spill > 0,
        ),
        history=tuple(history),
    )
