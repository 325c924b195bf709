"""What a replica really does, learned from what it did: capacity per phase, and how long it takes to start.

Capacity. A replica that had requests waiting throughout a rate window was at its limit, so its token rates
`(in, out)` then satisfy the busy-time model `in / prefill + out / decode = 1`. Each such window is one sample.
With samples at different input/output mixes, least squares on `a·in + b·out = 1` gives `a = 1/prefill` and
`b = 1/decode` separately. When the mixes are too alike to tell the phases apart, the declared prefill is kept and
decode alone is fitted: prefill is compute-bound and predictable from the model's FLOPs, while decode throughput
moves with batch size, sequence length and KV-cache pressure, so decode is the figure a manifest most often gets
wrong. Either way the result is exact at the mix the fleet actually serves, which is what the replica count depends
on. (Without output tokens, or when the declared prefill alone would overfill the time, the declared ratio is kept
and its scale fitted.) Unsaturated windows say nothing about capacity and are never samples (a replica serving
little is not a slow replica).

Cold start. A high percentile of the recent starts' times from scheduled to Ready.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costpolicy.money import ONE, ZERO
from costpolicy.spec import Calibration, Capacity

# Readings at the limit before the observed capacity is used. Each is a whole sample window at the limit, one per
# Prometheus reading; an under-declared fleet stays at its limit only between the saturation guard's spill and the
# next scale-down, a few readings each time, so asking for many more would leave it planning on the wrong figure
# (and flapping) for minutes. Three agreeing windows are enough to trust a figure measured at the mix served.
MIN_SAMPLES = 3
MAX_SAMPLES = 20  # the most recent ones are kept (in status, so a restart keeps them)
MIN_MIX_SPREAD = Decimal("0.05")  # below this normalised determinant the mixes cannot separate the phases
COLD_START_PERCENTILE = Decimal("0.9")
MAX_COLD_STARTS = 10


@dataclass(frozen=True, slots=True)
class CapacitySample:
    """Token rates of one replica over a window during which it had requests waiting all the time."""

    at: datetime
    input_tps: Decimal
    output_tps: Decimal


@dataclass(frozen=True, slots=True)
class Observed:
    prefill_tokens_per_second: Decimal
    decode_tokens_per_second: Decimal
    samples: int
    separated: bool  # True when the mixes varied enough to fit both phases; False: the declared ratio, rescaled


def record(
    samples: Sequence[CapacitySample], rates: Sequence[tuple[Decimal, Decimal]], at: datetime
) -> tuple[CapacitySample, ...]:
    """Add this reading's saturated replicas (their mean) and keep the newest.

    `at` is when the metrics were read; one sample per reading, so a reading seen by two reconciles (an event-driven
    one between two timer ticks) is not learned twice, which would let one window count as several."""
    usable = [(i, o) for i, o in rates if i >= 0 and o >= 0 and i + o > 0]
    if not usable or (samples and samples[-1].at >= at):
        return tuple(samples)
    n = Decimal(len(usable))
    sample = CapacitySample(at, sum((i for i, _ in usable), ZERO) / n, sum((o for _, o in usable), ZERO) / n)
    return (*samples, sample)[-MAX_SAMPLES:]


def estimate(samples: Sequence[CapacitySample], declared: Capacity) -> Observed | None:
    """Per-replica capacity from samples at the limit; None until there are any."""
    if not samples:
        return None
    xs = [s.input_tps for s in samples]
    ys = [s.output_tps for s in samples]
    sxx = sum((x * x for x in xs), ZERO)
    syy = sum((y * y for y in ys), ZERO)
    sxy = sum((x * y for x, y in zip(xs, ys, strict=True)), ZERO)
    sx, sy = sum(xs, ZERO), sum(ys, ZERO)
    det = sxx * syy - sxy * sxy
    if sxx > 0 and syy > 0 and det / (sxx * syy) >= MIN_MIX_SPREAD:
        a = (sx * syy - sy * sxy) / det
        b = (sy * sxx - sx * sxy) / det
        if a > 0 and b > 0:
            return Observed(ONE / a, ONE / b, len(samples), separated=True)
    # one mix (or a fit that is not physical): keep the declared prefill and fit decode, b in a0·x + b·y = 1
    a0 = ONE / declared.prefill_tokens_per_second
    if syy > 0:
        b = sum((y * (ONE - a0 * x) for x, y in zip(xs, ys, strict=True)), ZERO) / syy
        if b > 0:
            return Observed(declared.prefill_tokens_per_second, ONE / b, len(samples), separated=False)
    # no decode at all, or the declared prefill alone would overfill the time: keep the ratio, fit its scale k
    b0 = ONE / declared.decode_tokens_per_second
    zs = [a0 * x + b0 * y for x, y in zip(xs, ys, strict=True)]
    k = sum(zs, ZERO) / sum((z * z for z in zs), ZERO)
    return Observed(ONE / (k * a0), ONE / (k * b0), len(samples), separated=False)


def in_use(declared: Capacity, observed: Observed | None) -> tuple[Capacity, Calibration]:
    """The capacity decide() plans with: observed once there are enough samples, unless the spec says Declared."""
    if declared.calibration is Calibration.DECLARED or observed is None or observed.samples < MIN_SAMPLES:
        return declared, Calibration.DECLARED
    learned = Capacity(
        prefill_tokens_per_second=_round(observed.prefill_tokens_per_second),
        decode_tokens_per_second=_round(observed.decode_tokens_per_second),
        calibration=declared.calibration,
    )
    return learned, Calibration.OBSERVED


def observed_cold_start(seconds: Sequence[Decimal]) -> Decimal | None:
    """The nearest-rank 90th percentile of recent starts (with few starts, about the slowest); None without any."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = max(1, math.ceil(COLD_START_PERCENTILE * len(ordered)))
    return ordered[rank - 1]


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1")) if value >= 1 else value
