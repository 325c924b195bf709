"""The demand forecast and the daily profile across reconciles: learned from known demand only, kept in
status.forecast so a restarted operator continues from them, and used by decide() (a short peak is waited out on the
API; a daily ramp is met by replicas started ahead of it)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from costpolicy import Demand
from costpolicy.daily import BINS, DailyProfile
from costpolicy.daily import MIN_PAIRS as PROFILE_MIN_PAIRS
from costpolicy.daily import observe as learn_daily
from costpolicy.reversion import MIN_PAIRS, Reversion, observe
from crossover.api.v1alpha1 import InferenceDeploymentStatus
from crossover.reconcile.ports import MetricsReading
from crossover.reconcile.status import dump, forecast_to_status, profile_from_status, reversion_from_status
from crossover.reconcile.step import reconcile
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import NOW, ROUTER, manifest, resource

D = Decimal
STEP = timedelta(seconds=30)
MIX = Demand(D(1000), D(200))


def spec() -> dict[str, Any]:
    body = manifest()["spec"]
    del body["policy"]["budget"]
    body["policy"]["scaleUpStabilizationSeconds"] = 0
    return body


def demand(total: float) -> Demand:
    return MIX.scaled(D(f"{total:.3f}") / MIX.total_tps)


def wavy(i: int) -> Demand:
    """Below break-even (~590 tok/s): 300 tok/s with a 10-minute bump to 450 every hour."""
    return demand(450 if (i * 30) % 3600 < 600 else 300)


def run(status: dict[str, Any], reading: MetricsReading, now: Any) -> dict[str, Any]:
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(reading), ROUTER, now)
    return out.status


def test_forecast_survives_a_restart_and_learns_what_observe_learns() -> None:
    status: dict[str, Any] = {}
    direct = Reversion()
    steps = 3 * 120  # three hours of 30 s reconciles
    for i in range(steps):
        now = NOW + i * STEP
        if i == steps // 2:
            status = json_round_trip(status)  # a restart: a new process reads only what the API server kept
        status = run(status, MetricsReading(wavy(i), now), now)
        direct = observe(direct, now, wavy(i).total_tps)
    kept = reversion_from_status(InferenceDeploymentStatus.model_validate(status))
    assert kept == direct  # exactly: status holds every number observe() keeps, as plain decimal strings
    assert kept.pairs >= MIN_PAIRS and kept.trusted
    assert status["forecast"]["pairs"] == kept.pairs
    assert D(status["forecast"]["persistence"]) == kept.persistence.quantize(D("0.0001"))


def test_unknown_demand_teaches_nothing() -> None:
    now = NOW
    status = run({}, MetricsReading(demand(400), now), now)
    before = status["forecast"]
    for i in range(1, 5):  # Prometheus down: no demand, for two minutes
        status = run(status, MetricsReading(None, None, error="unreachable"), now + i * STEP)
    assert status["forecast"] == before
    status = run(status, MetricsReading(demand(400), now), now + 5 * STEP)  # the same reading seen again
    assert status["forecast"] == before
    later = now + 6 * STEP
    status = run(status, MetricsReading(demand(700), later), later)
    assert status["forecast"]["seenAt"].startswith(later.isoformat()[:19])
    assert D(status["forecast"]["base"]) > D(before["base"])


def test_the_forecast_learns_measured_demand_not_the_saturation_guards_raised_figure() -> None:
    measured = demand(100)
    full = MetricsReading(measured, NOW, signals={"kvCacheUsage": D("0.99")})  # the guard fires: plan for more
    status = run({}, full, NOW)
    assert status["signals"]["saturatedBy"] == ["kvCacheUsage"]
    assert D(status["forecast"]["base"]) == observe(Reversion(), NOW, measured.total_tps).base


def test_a_short_peak_in_status_forecast_is_waited_out_on_the_api() -> None:
    learned = Reversion(
        base=D(300),
        level=D(300),
        sxy=D(20),
        sxx=D(100),
        pairs=200,
        drift_sxy=D(50),
        drift_sxx=D(100),
        anchor_at=NOW - STEP,
        seen_at=NOW - STEP,
    )  # persistence 0.2, drift 0.5, the 12 h level well below break-even (~590 tok/s), last reading 30 s ago
    status = dump(InferenceDeploymentStatus(forecast=forecast_to_status(learned)))
    spike = demand(900)
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(MetricsReading(spike, NOW)),
                    ROUTER, NOW)  # fmt: skip
    assert out.decision is not None
    assert out.decision.reason.value == "PeakTooShort"
    assert out.status["replicas"]["desired"] == 0
    assert D(out.status["routing"]["spillFraction"]) == 1
    persistent = replace(learned, sxy=D(95))
    status = dump(InferenceDeploymentStatus(forecast=forecast_to_status(persistent)))
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(MetricsReading(spike, NOW)),
                    ROUTER, NOW)  # fmt: skip
    assert out.decision is not None and out.decision.replicas >= 1  # a persistent rise is self-hosted


def json_round_trip(status: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(status)))


def daily(i: int, step: timedelta) -> Demand:
    """300 tok/s, with 900 tok/s from 08:00 to 10:00 (UTC) every day."""
    hour = (NOW + i * step).hour
    return demand(900 if 8 <= hour < 10 else 300)


def test_the_daily_profile_survives_restarts_and_learns_what_observe_learns() -> None:
    """Thirty hours of reconciles five minutes apart, the operator restarted every six hours: status keeps every
    number of the profile (the hours it has seen, the hour being accumulated, the track record), so the profile after
    the restarts is exactly the one observe() learns from the same readings."""
    status: dict[str, Any] = {}
    direct = DailyProfile()
    step = timedelta(minutes=5)
    for i in range(30 * 12):
        now = NOW + i * step
        if i and i % (6 * 12) == 0:
            status = json_round_trip(status)
        reading = daily(i, step) if i % 7 else None  # now and then Prometheus cannot answer: nothing is learned
        status = run(status, MetricsReading(reading, now) if reading else MetricsReading(None, None, error="down"), now)
        if reading is not None:
            direct = learn_daily(direct, now, reading.total_tps)
    kept = profile_from_status(InferenceDeploymentStatus.model_validate(status))
    assert kept == direct
    assert kept.known_bins() == BINS and kept.pairs > 0  # a whole day learned, predictions being scored
    means = status["forecast"]["daily"]["means"]
    assert len(means) == BINS and D(means["08:00"]) == D(900) and D(means["03:00"]) == D(300)
    assert D(status["forecast"]["daily"]["skill"]) == 0  # a day and a bit: not trusted yet, so no pre-warm


def test_a_skilled_daily_profile_in_status_pre_warms_ahead_of_the_ramp() -> None:
    ramp = [D(300)] * 8 + [D(6000)] * 2 + [D(300)] * 14  # 08:00 to 10:00 busy
    skilled = DailyProfile(means=tuple(ramp), sxy=D(100), sxx=D(100), syy=D(100), pairs=2 * PROFILE_MIN_PAIRS)
    now = NOW.replace(hour=7, minute=45)  # read between hour centres, the profile rises 475 tok/s in the next 300 s
    # (the example's cold start): 775 tok/s then, where a replica beats the API by more than the margin
    status = dump(InferenceDeploymentStatus(forecast=forecast_to_status(Reversion(), skilled)))
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(MetricsReading(demand(300), now)),
                    ROUTER, now)  # fmt: skip
    assert out.decision is not None
    assert out.decision.reason.value == "DailyRamp"
    assert out.status["replicas"]["desired"] == 1
    assert D(out.status["routing"]["spillFraction"]) == 1  # nothing ready yet: demand now still goes to the API
    stages = {s["name"]: s for s in out.status["lastDecision"]["stages"]}
    assert stages["prewarm"]["reason"] == "DailyRamp" and "ahead of the daily ramp" in stages["prewarm"]["message"]
    flat = NOW.replace(hour=3)
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(MetricsReading(demand(300), flat)),
                    ROUTER, flat)  # fmt: skip
    assert out.decision is not None and out.decision.replicas == 0  # no ramp ahead at 03:00
