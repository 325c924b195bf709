"""Learned capacity and cold start, and the saturation guard: pure arithmetic on observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costpolicy import calibration, saturation
from costpolicy.calibration import CapacitySample, estimate, in_use, observed_cold_start, record
from costpolicy.pricing import busy_replicas
from costpolicy.snapshot import Demand
from costpolicy.spec import Calibration, Capacity

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REAL = Capacity(prefill_tokens_per_second=Decimal(32000), decode_tokens_per_second=Decimal(2000))
TWICE_DECODE = Capacity(prefill_tokens_per_second=Decimal(32000), decode_tokens_per_second=Decimal(4000))
D = Decimal


def at_limit(input_share: Decimal, capacity: Capacity = REAL) -> tuple[Decimal, Decimal]:
    """Rates of a replica fully busy at a mix where `input_share` of its GPU time prefills."""
    return input_share * capacity.prefill_tokens_per_second, (1 - input_share) * capacity.decode_tokens_per_second


def samples(*mixes: Decimal) -> list[CapacitySample]:
    return [CapacitySample(T0 + timedelta(seconds=i), *at_limit(m)) for i, m in enumerate(mixes)]


def test_varied_mixes_recover_both_phases() -> None:
    found = estimate(samples(D("0.1"), D("0.5"), D("0.8"), D("0.3"), D("0.6")), TWICE_DECODE)
    assert found is not None and found.separated
    assert found.prefill_tokens_per_second == pytest.approx(D(32000), rel=D("1e-6"))
    assert found.decode_tokens_per_second == pytest.approx(D(2000), rel=D("1e-6"))


def test_one_mix_corrects_decode_and_is_exact_at_that_mix() -> None:
    """Declared decode twice the real one: at the observed mix, the fitted capacity needs exactly the real time."""
    found = estimate(samples(*[D("0.2")] * 5), TWICE_DECODE)
    assert found is not None and not found.separated
    learned = Capacity(
        prefill_tokens_per_second=found.prefill_tokens_per_second,
        decode_tokens_per_second=found.decode_tokens_per_second,
    )
    demand = Demand(*at_limit(D("0.2")))
    assert busy_replicas(demand, learned) == pytest.approx(D(1), rel=D("1e-9"))
    assert busy_replicas(demand, TWICE_DECODE) == D("0.6")  # what the declaration believed
    # 4,000 corrected to the real 2,000; the declared prefill (right here) is kept
    assert found.decode_tokens_per_second == pytest.approx(D(2000), rel=D("1e-9"))
    assert found.prefill_tokens_per_second == D(32000)


def test_one_mix_with_a_wrong_prefill_still_plans_exactly_at_that_mix() -> None:
    """Declared prefill twice the real one instead: decode absorbs the error, the busy time at the mix is right."""
    twice_prefill = Capacity(prefill_tokens_per_second=D(64000), decode_tokens_per_second=D(2000))
    found = estimate(samples(*[D("0.2")] * 5), twice_prefill)
    assert found is not None and not found.separated
    learned = Capacity(
        prefill_tokens_per_second=found.prefill_tokens_per_second,
        decode_tokens_per_second=found.decode_tokens_per_second,
    )
    assert busy_replicas(Demand(*at_limit(D("0.2"))), learned) == pytest.approx(D(1), rel=D("1e-9"))


def test_one_mix_whose_declared_prefill_overfills_the_time_falls_back_to_the_declared_ratio() -> None:
    slow_prefill = Capacity(prefill_tokens_per_second=D(1000), decode_tokens_per_second=D(2000))
    found = estimate(samples(*[D("0.2")] * 5), slow_prefill)  # 6,400 prompt tok/s: > 1 s of a 1,000 tok/s prefill
    assert found is not None and not found.separated
    assert found.prefill_tokens_per_second / found.decode_tokens_per_second == pytest.approx(D("0.5"), rel=D("1e-9"))


def test_no_samples_no_estimate() -> None:
    assert estimate([], REAL) is None


@pytest.mark.parametrize(
    ("count", "calibration_field", "source"),
    [
        (calibration.MIN_SAMPLES - 1, Calibration.OBSERVED, Calibration.DECLARED),
        (calibration.MIN_SAMPLES, Calibration.OBSERVED, Calibration.OBSERVED),
        (calibration.MIN_SAMPLES, Calibration.DECLARED, Calibration.DECLARED),
    ],
)
def test_observed_capacity_is_used_once_there_are_enough_samples_unless_declared_is_asked(
    count: int, calibration_field: Calibration, source: Calibration
) -> None:
    declared = TWICE_DECODE.model_copy(update={"calibration": calibration_field})
    found = estimate(samples(*[D("0.2")] * count), declared)
    capacity, used = in_use(declared, found)
    assert used is source
    assert (capacity.decode_tokens_per_second < declared.decode_tokens_per_second) is (source is Calibration.OBSERVED)


def test_record_keeps_one_sample_per_reading_newest_last_and_bounded() -> None:
    kept: tuple[CapacitySample, ...] = ()
    for i in range(calibration.MAX_SAMPLES + 5):
        kept = record(kept, [(D(100), D(10)), (D(300), D(30))], T0 + timedelta(seconds=i))
    assert len(kept) == calibration.MAX_SAMPLES
    assert kept[-1].at == T0 + timedelta(seconds=calibration.MAX_SAMPLES + 4)
    assert (kept[-1].input_tps, kept[-1].output_tps) == (D(200), D(20))
    assert record(kept, [], T0) == kept  # no replica at its limit: nothing learned
    at = kept[-1].at
    assert record(kept, [(D(1), D(1))], at) == kept  # the same reading again (a second reconcile): not learned twice
    assert record(kept, [(D(1), D(1))], at - timedelta(seconds=1)) == kept  # nor an older one


@pytest.mark.parametrize(
    ("starts", "expected"),
    [([], None), ([D(40)], D(40)), ([D(30), D(90), D(60)], D(90)), ([D(i) for i in range(1, 11)], D(9))],
)
def test_cold_start_is_a_high_percentile_of_recent_starts(starts: list[Decimal], expected: Decimal | None) -> None:
    assert observed_cold_start(starts) == expected


def queue(waiting: int, growth: str, queued: int | None) -> dict[str, Decimal]:
    """Queue signals: requests waiting, their growth per second, engines queued throughout (None: unknown)."""
    found = {"requestsWaiting": D(waiting), "requestsWaitingGrowthPerSecond": D(growth)}
    return found if queued is None else {**found, "enginesQueuedThroughout": D(queued)}


GROWING = ("requestsWaitingGrowthPerSecond",)


@pytest.mark.parametrize(
    ("signals", "slo", "ready", "fired"),
    [
        ({}, D(1), 2, ()),
        (queue(12, "0.5", 3), None, 3, GROWING),  # every engine queued throughout, and the queue grows
        (queue(12, "0", 3), None, 3, ()),  # a steady queue
        (queue(0, "1", 0), None, 3, ()),  # drained
        # a burst left a request waiting on one engine of three for a while: the router could still use the others
        (queue(1, "0.2", 1), None, 3, ()),
        (queue(1, "0.2", 0), None, 1, ()),  # a request that just arrived: waiting for a moment, the queue emptied
        (queue(5, "0.2", None), None, 2, ()),  # unknown: no verdict
        (queue(30, "2", 1), None, 1, GROWING),  # the one warm engine (others warming) is full
        ({"kvCacheUsage": D("0.97")}, None, 2, ("kvCacheUsage",)),
        ({"kvCacheUsage": D("0.5")}, None, 2, ()),
        ({"ttftP95Seconds": D("2.5")}, D(1), 2, ("ttftP95Seconds",)),
        ({"ttftP95Seconds": D("2.5")}, None, 2, ()),  # no SLO set: TTFT alone is no verdict
        ({"ttftP95Seconds": D("0.5")}, D(1), 2, ()),
    ],
)
def test_saturation_names_the_signal_that_fired(
    signals: dict[str, Decimal], slo: Decimal | None, ready: int, fired: tuple[str, ...]
) -> None:
    assert saturation.check(signals, slo, ready).fired == fired


def test_saturated_demand_fills_the_ready_replicas_plus_one() -> None:
    demand = Demand(D(1000), D(100))  # 0.08 replica-equivalents of REAL: the arithmetic says one is plenty
    fired = saturation.check({"kvCacheUsage": D("0.99")}, None, 2)
    planned = saturation.planning_demand(demand, REAL, 2, D("0.8"), fired)
    assert busy_replicas(planned, REAL) == pytest.approx(D(3) * D("0.8"))
    assert planned.input_tps / planned.output_tps == demand.input_tps / demand.output_tps  # the mix is kept
    calm = saturation.check({"kvCacheUsage": D("0.2")}, None, 2)
    assert saturation.planning_demand(demand, REAL, 2, D("0.8"), calm) == demand
