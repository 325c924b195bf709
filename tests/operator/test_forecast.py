"""The demand forecast across reconciles: learned from known demand only, kept in status.forecast so a restarted
operator continues from it, and used by decide() (a short peak is waited out on the API)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from costpolicy import Demand
from costpolicy.reversion import MIN_PAIRS, Reversion, observe
from crossover.api.v1alpha1 import InferenceDeploymentStatus
from crossover.reconcile.ports import MetricsReading
from crossover.reconcile.status import dump, reversion_from_status, reversion_to_status
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
    status = dump(InferenceDeploymentStatus(forecast=reversion_to_status(learned)))
    spike = demand(900)
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(MetricsReading(spike, NOW)),
                    ROUTER, NOW)  # fmt: skip
    assert out.decision is not None
    assert out.decision.reason.value == "PeakTooShort"
    assert out.status["replicas"]["desired"] == 0
    assert D(out.status["routing"]["spillFraction"]) == 1
    persistent = replace(learned, sxy=D(95))
    status = dump(InferenceDeploymentStatus(forecast=reversion_to_status(persistent)))
    out = reconcile(resource(spec=spec(), status=status), FakeCluster(), FakeMetrics(MetricsReading(spike, NOW)),
                    ROUTER, NOW)  # fmt: skip
    assert out.decision is not None and out.decision.replicas >= 1  # a persistent rise is self-hosted


def json_round_trip(status: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(status)))
