"""Every field of an InferenceDeployment's spec acts: for each leaf of the CRD's spec schema, a row changes only
that field from the example manifest and sees what the operator does (children it applies, decision, routing,
costs) change. A field the API server accepts and the operator ignores is a defect; the meta-test fails when a new
leaf has no row.

Rows run the real reconcile() against the in-memory cluster (tests/operator/fakes.py) over one or more steps of a
scenario. `base` patches both sides the same way where a field only acts in a certain setting (owned pricing
instead of rented, a stabilisation window of 0 to see a step limit).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from costpolicy.snapshot import Demand
from crossover.reconcile.ports import MetricsReading
from crossover.reconcile.step import reconcile
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import NOW, ROUTER, manifest, resource

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "crossover.dev_inferencedeployments.yaml"
HIGH = Demand(Decimal(30000), Decimal(6000))
LOW = Demand(Decimal(300), Decimal(60))
ZERO_DEMAND = Demand(Decimal(0), Decimal(0))
MODERATE = Demand(Decimal(6000), Decimal(2400))  # 0.2 + 1.2 busy replicas: 2 at the target utilisation
VOLATILE = {"lastTransitionTime", "at", "asOf", "observedAt", "lastScaleTime", "time"}


@dataclass(frozen=True)
class Step:
    """One reconcile: `after` seconds from NOW, the demand Prometheus reports, and the cluster's readiness."""

    after: int = 0
    demand: Demand | None = HIGH
    ready: int | None = None  # None: every replica asked for is ready
    reading: dict[str, Any] = field(default_factory=dict)
    age: int = 0  # seconds the reading is old


SCENARIOS: dict[str, tuple[Step, ...]] = {
    "steady": (Step(),),
    "cold": (Step(ready=0),),  # nothing ready yet: what spills and how much
    "idle": (Step(demand=ZERO_DEMAND),),
    "near": (Step(demand=Demand(Decimal(1000), Decimal(200))),),
    "moderate": (Step(demand=MODERATE),),  # a replica saves a few dollars an hour
    "ramp": (Step(demand=LOW), Step(after=30, demand=HIGH)),  # demand jumps: scale-up stabilisation and step
    "fall": (Step(), Step(after=120, demand=LOW)),  # demand drops: scale-down stabilisation and step
    "stale": (Step(age=200),),  # a reading 200 s old: stale at the default 180 s
    "cached": (Step(demand=Demand(Decimal(30000), Decimal(6000), Decimal(27000))),),
    "requests": (Step(ready=0, demand=Demand(Decimal(30000), Decimal(6000), requests_per_second=Decimal(12))),),
    "spent": (Step(ready=0, reading={"api_spend_this_month": Decimal(4999)}),),
    "slow": (  # TTFT p95 of 3 s while the replicas' token arithmetic says they keep up
        Step(demand=MODERATE),
        *(Step(after=t, demand=MODERATE, reading={"signals": {"ttftP95Seconds": Decimal(3)}}) for t in (60, 150)),
    ),
    "measured": tuple(  # engine pods queued all through the window while serving half the declared decode rate
        Step(after=60 * i, reading={"capacity_samples": ((Decimal(1000), Decimal(1000)),) * 2}) for i in range(6)
    ),
}


def observe(spec: dict[str, Any], scenario: str) -> dict[str, Any]:
    """What the operator did after the scenario: children applied (with replicas) and status, timestamps dropped."""
    cluster = FakeCluster()
    status: dict[str, Any] = {}
    for step in SCENARIOS[scenario]:
        cluster.ready = step.ready
        now = NOW + timedelta(seconds=step.after)
        seen = now - timedelta(seconds=step.age) if step.demand is not None else None
        reading = MetricsReading(step.demand, seen, **step.reading)
        status = reconcile(resource(spec=spec, status=status), cluster, FakeMetrics(reading), ROUTER, now).status
    return {"children": _stable(cluster.objects), "status": _stable(status)}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    return value


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _drop(spec: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node[part]
    node.pop(leaf, None)


OWNED = {
    "purchasePricePerGPU": "30000",
    "amortizationMonths": 36,
    "powerWatts": 700,
    "electricityPricePerKWh": "0.12",
    "pue": "1.3",
}


def _owned(spec: dict[str, Any]) -> None:
    spec["selfHosted"]["pricing"] = {"owned": dict(OWNED)}


def _no_stabilisation(spec: dict[str, Any]) -> None:
    spec["policy"]["scaleUpStabilizationSeconds"] = 0
    spec["policy"]["scaleDownStabilizationSeconds"] = 0


@dataclass(frozen=True)
class Row:
    path: str
    value: Any  # the changed value; None: remove the field (its default or absence is the change)
    effect: str  # which part of what the operator does must change (EFFECTS)
    scenario: str = "steady"
    base: Any = None  # a patch applied to both sides first


def _engine(o: dict[str, Any]) -> Any:
    return o["children"].get(str(("Deployment", "ml", "llama-8b-engine")))


EFFECTS = {
    "pod": lambda o: (_engine(o)["spec"]["template"], o["children"].get(str(("Service", "ml", "llama-8b-engine")))),
    "router": lambda o: o["children"].get(str(("Deployment", "ml", "llama-8b-router"))),
    "replicas": lambda o: _engine(o)["spec"]["replicas"],
    "decision": lambda o: o["status"]["lastDecision"]["stages"],
    "spill": lambda o: o["status"]["lastDecision"]["spillFraction"],
    "cost": lambda o: o["status"].get("cost"),
    "routing": lambda o: o["status"]["routing"],
}


def _no_api_limit(spec: dict[str, Any]) -> None:
    """The example's token limit and budget pace would cap spill before the field under test does."""
    spec["api"].pop("limits", None)
    spec["policy"].pop("budget", None)


def _max_two_no_limit(spec: dict[str, Any]) -> None:
    _no_api_limit(spec)
    spec["replicas"]["max"] = 2


ROWS = [
    Row("model.name", "mistralai/Mistral-7B-Instruct-v0.3", "pod"),
    Row("model.servedName", "other-name", "pod"),
    Row("engine.kind", "sglang", "pod"),
    Row("engine.image", "vllm/vllm-openai:v0.10.2", "pod"),
    Row("engine.args", ["--max-model-len=4096"], "pod"),
    Row("engine.port", 8001, "pod"),
    Row("engine.gpu.resourceName", "amd.com/gpu", "pod"),
    Row("engine.gpu.count", 2, "pod"),
    Row("engine.gpu.type", "NVIDIA-A100-SXM4-80GB", "pod"),
    Row("engine.coldStartSeconds", 30, "decision", "ramp"),
    Row("engine.capacity.prefillTokensPerSecond", "8000", "replicas", "moderate"),
    Row("engine.capacity.decodeTokensPerSecond", "1000", "replicas", "moderate"),
    Row("engine.capacity.calibration", "Declared", "replicas", "measured"),
    Row("engine.drainSeconds", 600, "pod"),
    Row("replicas.min", 2, "replicas", "idle"),
    Row("replicas.max", 2, "replicas"),
    Row("replicas.pinned", 3, "replicas"),
    Row("selfHosted.pricing.rented.pricePerGPUHour", "4.00", "cost"),
    *(
        Row(f"selfHosted.pricing.owned.{k}", v, "cost", base=_owned)
        for k, v in {
            "purchasePricePerGPU": "20000",
            "amortizationMonths": 60,
            "powerWatts": 350,
            "electricityPricePerKWh": "0.30",
            "pue": "1.6",
        }.items()
    ),
    Row("selfHosted.overheadPerMonth", "6000", "cost"),
    Row("api.baseURL", "https://api.other-provider.com/v1", "routing"),
    Row("api.model", "other-model", "routing"),
    Row("api.credentialsSecretRef.name", "other-secret", "router"),
    Row("api.credentialsSecretRef.key", "otherKey", "router"),
    Row("api.pricing.inputPerMillion", "3.00", "cost"),
    Row("api.pricing.outputPerMillion", "15.00", "cost"),
    Row("api.pricing.cachedInputPerMillion", "1.00", "cost", "cached"),
    Row("api.limits.tokensPerMinute", 60000, "spill", "cold"),
    Row("api.limits.requestsPerMinute", 60, "spill", "requests"),
    Row("policy.mode", "APIOnly", "replicas"),
    Row("policy.targetUtilization", "0.5", "replicas", "moderate"),
    Row("policy.breakEvenMargin", "5", "replicas", "near"),
    Row("policy.scaleUpStabilizationSeconds", 0, "replicas", "ramp"),
    Row("policy.scaleDownStabilizationSeconds", 0, "replicas", "fall"),
    Row("policy.scaleUpMaxStep", 1, "replicas", "ramp", _no_stabilisation),
    Row("policy.scaleDownMaxStep", 1, "replicas", "fall", _no_stabilisation),
    Row("policy.metricsMaxAgeSeconds", 600, "replicas", "stale"),
    Row("policy.spill.onSaturation", False, "spill", "steady", _max_two_no_limit),
    Row("policy.spill.onColdStart", False, "spill", "cold", _no_api_limit),
    Row("policy.spill.maxFraction", "0.3", "spill", "cold", _no_api_limit),
    Row("policy.budget.apiPerMonth", "100000", "spill", "spent"),
    Row("slo.ttftP95Seconds", "1", "replicas", "slow"),  # saturated: one replica more than tokens say
]

# the engine pod template: each leaf lands in the rendered engine pod (or its container), so one rule covers them
TEMPLATE_VALUES: dict[str, Any] = {
    "metadata.labels": {"team": "ml"},
    "metadata.annotations": {"example.com/owner": "ml"},
    "spec.nodeSelector": {"pool": "gpu"},
    "spec.tolerations": [{"key": "pool", "operator": "Equal", "value": "h100", "effect": "NoSchedule"}],
    "spec.affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    },
    "spec.priorityClassName": "inference",
    "spec.serviceAccountName": "engine",
    "spec.runtimeClassName": "nvidia",
    "spec.imagePullSecrets": [{"name": "registry"}],
    "spec.securityContext.runAsUser": 1000,
    "spec.securityContext.runAsGroup": 1000,
    "spec.securityContext.runAsNonRoot": True,
    "spec.securityContext.fsGroup": 1000,
    "spec.securityContext.fsGroupChangePolicy": "OnRootMismatch",
    "spec.securityContext.supplementalGroups": [2000],
    "spec.securityContext.seccompProfile.type": "RuntimeDefault",
    "spec.securityContext.seccompProfile.localhostProfile": "profiles/engine.json",
    "spec.volumes": [{"name": "cache", "emptyDir": {}}],
    "spec.container.env": [{"name": "HF_HOME", "value": "/cache"}],
    "spec.container.envFrom": [{"secretRef": {"name": "hf-token"}}],
    "spec.container.volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    "spec.container.securityContext.allowPrivilegeEscalation": True,  # crossover's default is False
    "spec.container.securityContext.privileged": False,
    "spec.container.securityContext.readOnlyRootFilesystem": True,
    "spec.container.securityContext.runAsUser": 1000,
    "spec.container.securityContext.runAsGroup": 1000,
    "spec.container.securityContext.runAsNonRoot": True,
    "spec.container.securityContext.capabilities.add": ["NET_BIND_SERVICE"],
    "spec.container.securityContext.capabilities.drop": ["NET_RAW"],  # crossover's default is ALL
    "spec.container.securityContext.seccompProfile.type": "RuntimeDefault",
    "spec.container.securityContext.seccompProfile.localhostProfile": "profiles/engine.json",
    "spec.container.resources.requests": {"memory": "64Gi"},
    "spec.container.resources.limits": {"memory": "80Gi"},
}
TEMPLATE_BASES: dict[str, Any] = {  # a localhost profile needs its type; a mount, its volume
    "spec.container.volumeMounts": {"spec": {"volumes": [{"name": "cache", "emptyDir": {}}]}},
    "spec.securityContext.seccompProfile.localhostProfile": {
        "spec": {"securityContext": {"seccompProfile": {"type": "Localhost"}}}
    },
    "spec.container.securityContext.seccompProfile.localhostProfile": {
        "spec": {"container": {"securityContext": {"seccompProfile": {"type": "Localhost"}}}}
    },
}


def _template_row(leaf: str, value: Any) -> Row:
    base = TEMPLATE_BASES.get(leaf)
    return Row(f"engine.template.{leaf}", value, "pod", base=None if base is None else _with_template(base))


def _with_template(template: dict[str, Any]) -> Any:
    def patch(spec: dict[str, Any]) -> None:
        spec["engine"]["template"] = copy.deepcopy(template)

    return patch


ALL_ROWS = ROWS + [_template_row(leaf, value) for leaf, value in TEMPLATE_VALUES.items()]


def spec_leaves() -> list[str]:
    """Every leaf of the CRD's spec schema (an object with no declared properties is a leaf: a map)."""
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    out: list[str] = []

    def walk(node: dict[str, Any], path: list[str]) -> None:
        if node.get("type") == "object" and node.get("properties"):
            for name, child in node["properties"].items():
                walk(child, [*path, name])
        else:
            out.append(".".join(path))

    walk(schema, [])
    return out


def test_every_spec_leaf_has_a_row() -> None:
    covered = {row.path for row in ALL_ROWS}
    missing = [leaf for leaf in spec_leaves() if leaf not in covered]
    assert not missing, f"spec fields with no effect test: {missing}"
    unknown = covered - set(spec_leaves())
    assert not unknown, f"rows for fields the CRD does not have: {sorted(unknown)}"


@pytest.mark.parametrize("row", ALL_ROWS, ids=[row.path for row in ALL_ROWS])
def test_changing_only_this_field_changes_what_the_operator_does(row: Row) -> None:
    spec = manifest()["spec"]
    if row.base is not None:
        row.base(spec)
    changed = copy.deepcopy(spec)
    if row.value is None:
        _drop(changed, row.path)
    else:
        _set(changed, row.path, copy.deepcopy(row.value))
    before, after = observe(spec, row.scenario), observe(changed, row.scenario)
    assert after["status"].get("conditions") == before["status"].get("conditions") or not any(
        c["type"] == "SpecValid" and c["status"] == "False" for c in after["status"].get("conditions", [])
    ), f"{row.path}={row.value!r} was refused: {after['status'].get('conditions')}"
    effect = EFFECTS[row.effect]
    assert effect(after) != effect(before), f"{row.path}={row.value!r} did not change the {row.effect}"
