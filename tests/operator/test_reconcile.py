"""reconcile() with fake adapters: children, scaling, status, conditions, events, bad specs, secrets."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from costpolicy import Demand
from crossover.api.v1alpha1 import STATUS_DECIMAL_PATTERN
from crossover.contracts import ENV_API_KEY
from crossover.reconcile.children import RouterPodSettings
from crossover.reconcile.ports import MetricsReading
from crossover.reconcile.step import Resource, reconcile
from tests.operator.fakes import FakeCluster, FakeMetrics

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROUTER = RouterPodSettings(image="crossover:test")
HIGH = Demand(Decimal(30000), Decimal(6000))  # 0.5 + 3 busy with decode 2000: 5 replicas at 80 %


def manifest() -> dict:
    return yaml.safe_load((REPO / "examples/llama-8b-h100-vs-haiku.yaml").read_text())


def resource(spec: dict | None = None, status: dict | None = None, generation: int = 1) -> Resource:
    return Resource("llama-8b", "ml", "uid-1", generation, spec or manifest()["spec"], status or {})


def reading(demand: Demand | None = HIGH, at: datetime = NOW, **kw) -> MetricsReading:
    return MetricsReading(demand, at if demand is not None else None, **kw)


def run(cluster: FakeCluster, metrics: FakeMetrics, status: dict | None = None, now: datetime = NOW, **kw):
    return reconcile(resource(status=status, **kw), cluster, metrics, ROUTER, now)


def conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


def test_first_reconcile_creates_children_and_scales_up():
    spec = manifest()["spec"]
    del spec["policy"]["budget"]  # with the example's $5,000/month, spill is paced to ~11 % (see below)
    del spec["api"]["limits"]  # and its 2M tokens/minute would cap it at 83 %
    cluster = FakeCluster(ready=0)
    out = reconcile(resource(spec=spec), cluster, FakeMetrics(reading()), ROUTER, NOW)
    kinds = sorted((k, n) for k, _, n in cluster.objects)
    assert kinds == [
        ("Deployment", "llama-8b-engine"),
        ("Deployment", "llama-8b-router"),
        ("RoleBinding", "llama-8b-router"),
        ("Service", "llama-8b"),
        ("Service", "llama-8b-engine"),
        ("ServiceAccount", "llama-8b-router"),
    ]
    assert cluster.creates == 1  # the engine is created once with its initial count, then only applied
    assert cluster.scale_calls == [4]  # 0 → rate-limited to +4 per decision
    status = out.status
    assert status["replicas"]["desired"] == 4
    policy = {k: status["routing"][k] for k in ("mode", "spillFraction", "spillPercent", "apiAvailable")}
    assert policy == {"mode": "CostOptimized", "spillFraction": "1.0000", "spillPercent": "100%", "apiAvailable": True}
    assert status["lastDecision"]["action"] == "ScaleUp"
    assert status["observedGeneration"] == 1
    assert conditions(status)["Spilling"]["status"] == "True"
    assert any(e.reason == "ScaleUp" for e in out.events)


def test_children_carry_owner_references_and_no_replicas_in_the_applied_template():
    cluster = FakeCluster()
    run(cluster, FakeMetrics(reading()))
    engine = cluster.objects[("Deployment", "ml", "llama-8b-engine")]
    assert engine["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    container = engine["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    router = cluster.objects[("Deployment", "ml", "llama-8b-router")]
    env = router["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": ENV_API_KEY, "valueFrom": {"secretKeyRef": {"name": "provider-key", "key": "apiKey"}}}]


def test_user_edits_to_children_are_reconciled_back():
    cluster = FakeCluster()
    run(cluster, FakeMetrics(reading()))
    engine = cluster.objects[("Deployment", "ml", "llama-8b-engine")]
    engine["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    run(cluster, FakeMetrics(reading()))
    assert (
        cluster.objects[("Deployment", "ml", "llama-8b-engine")]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "vllm/vllm-openai:v0.11.0"
    )


def test_steady_state_holds_without_scaling_again():
    cluster = FakeCluster()
    first = run(cluster, FakeMetrics(reading()))
    second = run(cluster, FakeMetrics(reading()), status=first.status, now=NOW + timedelta(seconds=30))
    third = run(cluster, FakeMetrics(reading()), status=second.status, now=NOW + timedelta(seconds=60))
    assert cluster.scale_calls == [4, 5]
    assert third.status["lastDecision"]["action"] == "Hold"
    assert third.scaled_to is None


def test_prometheus_unreachable_holds_replicas_and_reports():
    cluster = FakeCluster()
    up = run(cluster, FakeMetrics(reading()))
    down = run(
        cluster,
        FakeMetrics(MetricsReading(None, None, error="Prometheus unreachable (ConnectionError)")),
        status=up.status,
        now=NOW + timedelta(seconds=30),
    )
    assert cluster.scale_calls == [4]
    c = conditions(down.status)["MetricsAvailable"]
    assert c["status"] == "False"
    assert c["reason"] == "MetricsUnavailable"
    assert "Prometheus unreachable" in c["message"]
    assert any(e.type == "Warning" and "MetricsAvailable=False" in e.message for e in down.events)
    assert down.status["replicas"]["desired"] == 4
    prices = {k: v for k, v in down.status["cost"].items() if k != "ledger"}
    assert prices == {k: v for k, v in up.status["cost"].items() if k != "ledger"}  # the last good figures stay


def test_budget_pace_caps_spill_while_warming():
    # $5,000 over the 204 hours left in November: $24.51/h of a $216/h API bill for all demand
    out = run(FakeCluster(ready=0), FakeMetrics(reading()))
    assert out.status["routing"]["spillFraction"] == "0.1135"


def test_unschedulable_pods_set_capacity_limited():
    cluster = FakeCluster(ready=2, unschedulable=2)
    first = run(cluster, FakeMetrics(reading()))
    out = run(cluster, FakeMetrics(reading()), status=first.status, now=NOW + timedelta(seconds=30))
    c = conditions(out.status)["CapacityLimited"]
    assert (c["status"], c["reason"]) == ("True", "Unschedulable")
    assert Decimal(out.status["routing"]["spillFraction"]) > 0


def test_an_hpa_on_the_engine_is_not_fought():
    cluster = FakeCluster(hpas=["HorizontalPodAutoscaler/engine-hpa"])
    out = run(cluster, FakeMetrics(reading()))
    assert cluster.scale_calls == []
    c = conditions(out.status)["AutoscalerConflict"]
    assert c["status"] == "True"
    assert conditions(out.status)["Ready"]["status"] == "False"


def test_advisory_mode_changes_nothing():
    spec = manifest()["spec"]
    spec["policy"]["mode"] = "Advisory"
    cluster = FakeCluster()
    out = reconcile(resource(spec=spec), cluster, FakeMetrics(reading()), ROUTER, NOW)
    assert cluster.scale_calls == []
    assert out.status["lastDecision"]["replicas"] == 4
    assert out.status["replicas"]["desired"] == 0


def test_advisory_mode_reports_its_spill_but_never_routes_by_it():
    spec = manifest()["spec"]
    cold = FakeCluster(ready=0)  # nothing ready: the decision spills everything
    routed = reconcile(resource(spec=spec), cold, FakeMetrics(reading()), ROUTER, NOW)
    spec["policy"]["mode"] = "Advisory"
    advised = reconcile(resource(spec=spec), FakeCluster(ready=0), FakeMetrics(reading()), ROUTER, NOW)
    assert Decimal(routed.status["routing"]["spillFraction"]) > 0
    assert Decimal(advised.status["lastDecision"]["spillFraction"]) > 0  # reported
    assert Decimal(advised.status["routing"]["spillFraction"]) == 0  # not applied


def test_invalid_spec_keeps_the_last_good_state():
    cluster = FakeCluster()
    good = run(cluster, FakeMetrics(reading()))
    objects = json.dumps(list(cluster.objects.items()), sort_keys=True)
    spec = manifest()["spec"]
    spec["replicas"] = {"min": 5, "max": 2}
    bad = reconcile(
        resource(spec=spec, status=good.status, generation=2),
        cluster,
        FakeMetrics(reading()),
        ROUTER,
        NOW + timedelta(seconds=30),
    )
    assert json.dumps(list(cluster.objects.items()), sort_keys=True) == objects
    assert cluster.scale_calls == [4]
    c = conditions(bad.status)["SpecValid"]
    assert c["status"] == "False"
    assert "replicas.min (5) must be <= replicas.max (2)" in c["message"]
    assert bad.status["replicas"] == good.status["replicas"]
    assert any(e.type == "Warning" and e.reason == "InvalidSpec" for e in bad.events)


def test_condition_transition_time_moves_only_on_flips():
    cluster = FakeCluster()
    a = run(cluster, FakeMetrics(reading()))
    b = run(cluster, FakeMetrics(reading()), status=a.status, now=NOW + timedelta(seconds=30))
    assert (
        conditions(a.status)["Spilling"]["lastTransitionTime"] == conditions(b.status)["Spilling"]["lastTransitionTime"]
    )
    c = run(cluster, FakeMetrics(reading()), status=b.status, now=NOW + timedelta(seconds=60))
    assert conditions(c.status)["Spilling"]["status"] == "False"  # all replicas ready now
    assert (
        conditions(c.status)["Spilling"]["lastTransitionTime"] != conditions(b.status)["Spilling"]["lastTransitionTime"]
    )


def test_restart_mid_scale_does_not_scale_down():
    """History lives in status: a new operator process continues from it instead of starting cold."""
    cluster = FakeCluster()
    status = run(cluster, FakeMetrics(reading())).status
    status = run(cluster, FakeMetrics(reading()), status=status, now=NOW + timedelta(seconds=30)).status
    low = Demand(Decimal(100), Decimal(10))
    after = run(
        cluster,
        FakeMetrics(reading(low, at=NOW + timedelta(seconds=60))),
        status=status,
        now=NOW + timedelta(seconds=60),
    )
    assert after.status["replicas"]["desired"] == 5
    assert after.status["lastDecision"]["reason"] == "ScaleDownStabilizing"
    assert status["recommendations"]  # what made that possible


def test_no_secret_values_in_children_status_or_events():
    """The provider key lives in its Secret; the router gets it by reference, never by value."""
    cluster = FakeCluster()
    secret = {
        "kind": "Secret",
        "metadata": {"namespace": "ml", "name": "provider-key"},
        "data": {"apiKey": "c2stdmVyeS1zZWNyZXQ="},
    }
    cluster.create(secret)  # sk-very-secret, base64 as the API server stores it
    out = run(cluster, FakeMetrics(reading()))
    owned = [obj for key, obj in cluster.objects.items() if key[0] != "Secret"]
    text = json.dumps(out.status) + " ".join(e.message for e in out.events) + json.dumps(owned)
    assert "c2stdmVyeS1zZWNyZXQ=" not in text and "sk-very-secret" not in text
    router = cluster.objects[("Deployment", "ml", "llama-8b-router")]["spec"]["template"]["spec"]["containers"][0]
    assert all("value" not in env for env in router["env"])  # references only


STATUS_DECIMALS = (
    ("routing", "spillFraction"),
    ("routing", "api", "inputPerMillion"),
    ("cost", "selfHostedPerMillionTokens"),
    ("cost", "apiPerMillionTokens"),
    ("cost", "breakEvenTokensPerSecond"),
    ("cost", "hourly", "selfHosted"),
    ("cost", "hourly", "api"),
    ("demand", "inputTokensPerSecond"),
    ("demand", "outputTokensPerSecond"),
)


@pytest.mark.parametrize(
    "demand",
    [HIGH, Demand(Decimal(0), Decimal(0)), Demand(Decimal("1E+5"), Decimal("2.5E-7"))],
    ids=["high", "zero", "exponents"],
)
def test_status_decimals_are_plain_digits_the_crd_accepts(demand):
    """The CRD's pattern refuses exponents (`1E+5`, `0E-10`): every decimal in status must be plain digits."""
    status = run(FakeCluster(), FakeMetrics(reading(demand))).status
    checked = 0
    for path in STATUS_DECIMALS:
        value = status
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            assert re.fullmatch(STATUS_DECIMAL_PATTERN, value), (path, value)
            checked += 1
    assert checked >= 6
