"""reconcile() with live signals: signals in status, learned capacity and cold start, the saturation guard."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from costpolicy import Demand, calibration
from crossover.reconcile.ports import MetricsReading
from crossover.reconcile.step import Outcome, reconcile
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import NOW, ROUTER, manifest, resource

D = Decimal
# real decode 2,000 tok/s, prefill 30,000 (as declared): a replica at its limit at 10 % prefill time
AT_LIMIT = (D(3000), D(1800))
DEMAND = Demand(D(12000), D(7200))  # 4 real replicas busy: 5 at 80 %; declared at twice the decode: 3


def spec(**changes: Any) -> dict[str, Any]:
    body = manifest()["spec"]
    del body["policy"]["budget"]
    del body["api"]["limits"]
    body["policy"]["scaleUpStabilizationSeconds"] = 0
    body["engine"]["capacity"]["decodeTokensPerSecond"] = "4000"  # declared twice the real decode
    for path, value in changes.items():
        node = body
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return body


def loop(body: dict[str, Any], readings: list[MetricsReading], cluster: FakeCluster | None = None) -> list[Outcome]:
    """Reconcile once per reading, one second apart, status carried over as the API server would."""
    cluster = cluster or FakeCluster()
    status: dict[str, Any] = {}
    outcomes = []
    for i, one in enumerate(readings):
        now = NOW + timedelta(seconds=i)
        out = reconcile(resource(spec=body, status=status), cluster, FakeMetrics(one), ROUTER, now)
        status = out.status
        outcomes.append(out)
    return outcomes


def saturated_readings(n: int) -> list[MetricsReading]:
    return [MetricsReading(DEMAND, NOW + timedelta(seconds=i), capacity_samples=(AT_LIMIT,) * 3) for i in range(n)]


def test_signals_appear_in_status_as_decimal_strings_and_unknown_ones_are_absent() -> None:
    signals = {"gpuUtilization": D("87.46"), "requestsWaiting": D(3), "ttftP95Seconds": D("0.4213")}
    out = loop(spec(), [MetricsReading(DEMAND, NOW, signals=signals)])[-1]
    shown = out.status["signals"]
    assert shown["gpuUtilization"] == "87.5" and shown["requestsWaiting"] == "3.0"
    assert shown["ttftP95Seconds"] == "0.421"
    assert "kvCacheUsage" not in shown  # unknown: absent, never zero
    assert shown["observedAt"].startswith("2026-11-22T12:00:00")
    assert shown["saturatedBy"] == []


def test_declared_twice_the_real_decode_is_corrected_by_saturated_windows_and_scales_up() -> None:
    declared = loop(spec(), [MetricsReading(DEMAND, NOW)])[-1]
    learned = loop(spec(), saturated_readings(calibration.MIN_SAMPLES))
    before = [o for o in learned[: calibration.MIN_SAMPLES - 1]]
    after = learned[-1]
    capacity = after.status["capacity"]
    assert capacity["declared"]["decodeTokensPerSecond"] == "4000"
    assert capacity["inUse"]["source"] == "Observed"
    assert D(capacity["observed"]["decodeTokensPerSecond"]) < D(4000)
    assert capacity["observed"]["samples"] == calibration.MIN_SAMPLES
    assert len(capacity["samples"]) == calibration.MIN_SAMPLES  # persisted: a restarted operator keeps them
    assert all(o.status["capacity"]["inUse"]["source"] == "Declared" for o in before)
    assert declared.decision is not None and after.decision is not None
    assert after.decision.recommended_replicas > declared.decision.recommended_replicas
    assert any(e.reason == "CapacityCalibrated" for e in after.events)


def test_calibration_declared_keeps_the_manifest_figures() -> None:
    after = loop(spec(**{"engine.capacity.calibration": "Declared"}), saturated_readings(calibration.MIN_SAMPLES))
    learned = loop(spec(), saturated_readings(calibration.MIN_SAMPLES))
    assert after[-1].status["capacity"]["inUse"]["source"] == "Declared"
    assert after[-1].status["capacity"]["inUse"]["decodeTokensPerSecond"] == "4000"
    assert after[-1].decision is not None and learned[-1].decision is not None
    assert after[-1].decision.recommended_replicas < learned[-1].decision.recommended_replicas


def test_unsaturated_windows_teach_nothing() -> None:
    quiet = [MetricsReading(DEMAND, NOW + timedelta(seconds=i)) for i in range(calibration.MIN_SAMPLES + 2)]
    out = loop(spec(), quiet)[-1]
    assert "observed" not in out.status["capacity"]
    assert out.status["capacity"]["inUse"]["source"] == "Declared"


def test_observed_cold_start_longer_than_declared_is_what_a_new_replica_costs() -> None:
    slow = FakeCluster(started=(("llama-8b-engine-a", D("612.4")), ("llama-8b-engine-b", D("580"))))
    out = loop(spec(), [MetricsReading(DEMAND, NOW)] * 2, slow)[-1]  # the first reconcile creates the Deployment
    cold = out.status["coldStart"]
    assert cold["declaredSeconds"] == 300
    assert cold["observedSeconds"] == "612.4"
    assert cold["inUseSeconds"] == 613
    fast = loop(spec(), [MetricsReading(DEMAND, NOW)] * 2, FakeCluster(started=(("p", D(20)),)))[-1]
    assert fast.status["coldStart"]["inUseSeconds"] == 300  # the larger of declared and observed
    assert out.decision is not None and fast.decision is not None
    assert fast.status["coldStart"]["observedSeconds"] == "20.0"


def test_ttft_slo_pulls_a_replica_in_and_says_which_signal_fired() -> None:
    small = Demand(D(3000), D(360))  # well inside one declared replica
    slow = {"ttftP95Seconds": D("2.5"), "gpuUtilization": D(99)}
    one = {"replicas.min": 1}  # one replica ready and serving
    readings = [MetricsReading(small, NOW, signals=slow)] * 2  # the first reconcile creates the Deployment
    calm = loop(spec(**one), readings)[-1]
    guarded_run = loop(spec(**one, **{"slo.ttftP95Seconds": "1.0"}), readings)
    guarded = guarded_run[-1]
    assert calm.decision is not None and guarded.decision is not None
    assert calm.status["signals"]["saturatedBy"] == []
    assert guarded.status["signals"]["saturatedBy"] == ["ttftP95Seconds"]
    assert guarded.decision.recommended_replicas > calm.decision.recommended_replicas
    assert guarded.decision.spill_fraction > calm.decision.spill_fraction  # overflow spills now, before any start
    fired = [e for o in guarded_run for e in o.events if e.reason == "Saturated"]
    assert len(fired) == 1  # on the transition, not every reconcile
    assert fired and fired[0].type == "Warning" and "ttftP95Seconds" in fired[0].message


def test_a_reading_two_reconciles_see_is_learned_once() -> None:
    same = MetricsReading(DEMAND, NOW, capacity_samples=(AT_LIMIT,))
    out = loop(spec(), [same, same])[-1]  # a second reconcile before the next Prometheus round
    assert len(out.status["capacity"]["samples"]) == 1
    assert out.status["capacity"]["observed"]["samples"] == 1
