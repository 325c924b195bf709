"""What the loop observes, not what the manifest says: signals, learned capacity and cold start, saturation.

From the previous status (which persists capacity samples and recent starts, so a restart keeps them), this
reconcile's metrics reading and engine state, it works out the CostSpec decide() plans with (capacity in use, cold
start in use), the demand it plans for (raised when the engines are saturated), and the status that says so.
The arithmetic is costpolicy's (calibration, saturation); this module only carries values between status and it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costpolicy import calibration, saturation
from costpolicy.snapshot import Demand
from costpolicy.spec import Calibration, CostSpec
from crossover.api.v1alpha1 import (
    CapacityFigures,
    CapacityInUse,
    CapacitySampleRecord,
    CapacityStatus,
    ColdStartRecord,
    ColdStartStatus,
    InferenceDeploymentSpec,
    InferenceDeploymentStatus,
    ObservedCapacity,
    SignalsStatus,
)
from crossover.reconcile.ports import EngineState, MetricsReading


@dataclass(frozen=True)
class Observations:
    cost_spec: CostSpec  # the spec's economics with the capacity and cold start in use
    demand: Demand | None  # what decide() plans for (None: unknown)
    saturation: saturation.Saturation
    signals: SignalsStatus | None
    capacity: CapacityStatus
    cold_start: ColdStartStatus
    notes: list[tuple[str, str, str]]  # (event type, reason, message) for transitions worth an event


def observe(
    spec: InferenceDeploymentSpec,
    previous: InferenceDeploymentStatus,
    engine: EngineState,
    reading: MetricsReading,
    now: datetime,
) -> Observations:
    declared = spec.engine.capacity
    known = reading.demand is not None
    samples = _samples(previous)
    if known:
        samples = calibration.record(samples, reading.capacity_samples, reading.observed_at or now)
    observed = calibration.estimate(samples, declared)
    capacity, source = calibration.in_use(declared, observed)

    starts = _starts(previous, engine)
    observed_start = calibration.observed_cold_start([s for _, s in starts])
    declared_start = spec.engine.cold_start_seconds
    start_in_use = max(declared_start, math.ceil(observed_start) if observed_start is not None else 0)

    cost_spec = spec.cost_spec().model_copy(update={"capacity": capacity, "cold_start_seconds": start_in_use})
    fired = (
        saturation.check(reading.signals, spec.slo.ttft_p95_seconds, engine.ready)
        if known
        else saturation.Saturation((), "")
    )
    demand = reading.demand
    if demand is not None and fired.saturated and spec.policy.spill.on_saturation:
        demand = saturation.planning_demand(demand, capacity, engine.ready, spec.policy.target_utilization, fired)

    notes: list[tuple[str, str, str]] = []
    was = previous.signals.saturated_by if previous.signals is not None else []
    if fired.saturated and list(fired.fired) != was:
        notes.append(("Warning", "Saturated", f"engines saturated ({', '.join(fired.fired)}): {fired.message}"))
    elif was and not fired.saturated and known:
        notes.append(("Normal", "Unsaturated", "no saturation signal fires any more"))
    was_source = previous.capacity.in_use.source if previous.capacity is not None else Calibration.DECLARED.value
    if source.value != was_source:
        notes.append(
            (
                "Normal",
                "CapacityCalibrated" if source is Calibration.OBSERVED else "CapacityDeclared",
                f"planning with {source.value.lower()} capacity: prefill {capacity.prefill_tokens_per_second}, "
                f"decode {capacity.decode_tokens_per_second} tokens/s per replica (declared "
                f"{declared.prefill_tokens_per_second} / {declared.decode_tokens_per_second})",
            )
        )

    return Observations(
        cost_spec=cost_spec,
        demand=demand,
        saturation=fired,
        signals=_signals(reading, fired, now) if known else previous.signals,
        capacity=CapacityStatus(
            declared=CapacityFigures(
                prefill_tokens_per_second=declared.prefill_tokens_per_second,
                decode_tokens_per_second=declared.decode_tokens_per_second,
            ),
            observed=None
            if observed is None
            else ObservedCapacity(
                prefill_tokens_per_second=_tenth(observed.prefill_tokens_per_second),
                decode_tokens_per_second=_tenth(observed.decode_tokens_per_second),
                samples=observed.samples,
                phases_separated=observed.separated,
            ),
            in_use=CapacityInUse(
                prefill_tokens_per_second=capacity.prefill_tokens_per_second,
                decode_tokens_per_second=capacity.decode_tokens_per_second,
                source=source.value,
            ),
            samples=[
                CapacitySampleRecord(
                    time=s.at,
                    input_tokens_per_second=_tenth(s.input_tps),
                    output_tokens_per_second=_tenth(s.output_tps),
                )
                for s in samples
            ],
        ),
        cold_start=ColdStartStatus(
            declared_seconds=declared_start,
            observed_seconds=None if observed_start is None else _tenth(observed_start),
            in_use_seconds=start_in_use,
            starts=[ColdStartRecord(pod=pod, seconds=_tenth(seconds)) for pod, seconds in starts],
        ),
        notes=notes,
    )


def _samples(previous: InferenceDeploymentStatus) -> tuple[calibration.CapacitySample, ...]:
    if previous.capacity is None:
        return ()
    return tuple(
        calibration.CapacitySample(s.time, s.input_tokens_per_second, s.output_tokens_per_second)
        for s in previous.capacity.samples
    )


def _starts(previous: InferenceDeploymentStatus, engine: EngineState) -> list[tuple[str, Decimal]]:
    """Recent starts, one per pod (a pod's start is measured once), newest last."""
    known = [(r.pod, r.seconds) for r in previous.cold_start.starts] if previous.cold_start is not None else []
    seen = {pod for pod, _ in known}
    known += [(pod, seconds) for pod, seconds in engine.started if pod not in seen]
    return known[-calibration.MAX_COLD_STARTS :]


def _signals(reading: MetricsReading, fired: saturation.Saturation, now: datetime) -> SignalsStatus:
    def known(key: str, places: str) -> Decimal | None:
        value = reading.signals.get(key)
        return None if value is None or value < 0 else value.quantize(Decimal(places))

    return SignalsStatus(
        gpu_utilization=known("gpuUtilization", "0.1"),
        requests_waiting=known("requestsWaiting", "0.1"),
        kv_cache_usage=known("kvCacheUsage", "0.001"),
        ttft_p95_seconds=known("ttftP95Seconds", "0.001"),
        observed_at=reading.observed_at or now,
        saturated_by=list(fired.fired),
    )


def _tenth(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"))
