"""The engine pod crossover generates: launch line per engine kind, spec.engine.template merged in, gpu.type as a
node selector, and the graceful stop (preStop, grace period)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from crossover.api.v1alpha1 import InferenceDeploymentSpec
from crossover.reconcile.children import (
    PRE_STOP_SECONDS,
    EngineSettings,
    Owner,
    engine_deployment,
    engine_launch,
)

REPO = Path(__file__).resolve().parents[2]
OWNER = Owner("llama-8b", "ml", "uid-1")


def spec_dict(**engine: Any) -> dict[str, Any]:
    spec = yaml.safe_load((REPO / "examples/llama-8b-h100-vs-haiku.yaml").read_text())["spec"]
    spec["engine"].update(engine)
    return spec


def pod(spec: dict[str, Any], settings: EngineSettings | None = None) -> dict[str, Any]:
    parsed = InferenceDeploymentSpec.model_validate(spec)
    template: dict[str, Any] = engine_deployment(OWNER, parsed, settings)["spec"]["template"]
    return template


def container(spec: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = pod(spec)["spec"]["containers"][0]
    return found


# ---- 3. launch per kind, against each official image's documented entrypoint -------------------------------
# vLLM:   docs.vllm.ai/en/stable/deployment/k8s/ ("vllm serve MODEL"; --model is deprecated for `vllm serve`)
# SGLang: docs.sglang.io/docs/get-started/install (lmsysorg/sglang has no ENTRYPOINT; the docs run
#         `python3 -m sglang.launch_server --model-path MODEL --host 0.0.0.0 --port 30000`; the host defaults to
#         127.0.0.1, which a pod's Service could not reach)
# TGI:    huggingface.co/docs/text-generation-inference/quicktour (ENTRYPOINT text-generation-launcher; the docs
#         pass `--model-id MODEL` only)
LAUNCH_TABLE = [
    (
        "vllm",
        ["vllm", "serve"],
        ["meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "llama-8b", "--port", "8000", "--x=1"],
    ),
    (
        "sglang",
        ["python3", "-m", "sglang.launch_server"],
        [
            "--model-path", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "llama-8b",
            "--host", "0.0.0.0", "--port", "8000", "--enable-metrics", "--x=1",
        ],
    ),
    ("tgi", None, ["--model-id", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8000", "--x=1"]),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "command", "args"), LAUNCH_TABLE, ids=[row[0] for row in LAUNCH_TABLE])
def test_engine_container_launches_each_kind_as_its_image_documents(kind, command, args):
    rendered = container(spec_dict(kind=kind, args=["--x=1"]))
    assert rendered.get("command") == command  # None: the image's own entrypoint runs (TGI's launcher)
    assert rendered["args"] == args
    assert "--model" not in rendered["args"]  # vLLM's deprecated flag, and not an SGLang/TGI one either
    assert rendered["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_launch_uses_the_resource_name_when_no_served_name():
    spec = spec_dict()
    del spec["model"]["servedName"]
    launch = engine_launch(InferenceDeploymentSpec.model_validate(spec), "my-model")
    assert launch.args[:3] == ["meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "my-model"]


# ---- 2. the template ---------------------------------------------------------------------------------------

TEMPLATE = {
    "metadata": {"labels": {"team": "search"}, "annotations": {"example.com/owner": "search"}},
    "spec": {
        "nodeSelector": {"pool": "llm"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "llm-inference",
        "serviceAccountName": "engine",
        "runtimeClassName": "nvidia",
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}}],
        "container": {
            "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
            "envFrom": [{"configMapRef": {"name": "engine-env"}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/models"}],
            "securityContext": {"readOnlyRootFilesystem": True},
            "resources": {"requests": {"cpu": 8, "memory": "64Gi"}, "limits": {"memory": "64Gi"}},
        },
    },
}


def test_template_fields_land_in_the_engine_pod():
    rendered = pod(spec_dict(template=copy.deepcopy(TEMPLATE)))
    spec, meta = rendered["spec"], rendered["metadata"]
    assert meta["labels"]["team"] == "search"
    assert meta["labels"]["crossover.dev/inference-deployment"] == "llama-8b"
    assert meta["annotations"]["example.com/owner"] == "search"
    assert meta["annotations"]["prometheus.io/scrape"] == "true"
    assert spec["priorityClassName"] == "llm-inference"
    assert spec["serviceAccountName"] == "engine"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["affinity"] == TEMPLATE["spec"]["affinity"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["volumes"] == [{"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}}]
    # the GPU toleration crossover always sets stays; the template's is added
    assert {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"} in spec["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    engine = spec["containers"][0]
    assert engine["env"] == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    assert engine["envFrom"] == [{"configMapRef": {"name": "engine-env"}}]
    assert engine["volumeMounts"] == [{"name": "cache", "mountPath": "/models"}]
    # merged over crossover's container security context, which keeps its defaults
    assert engine["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert engine["resources"]["requests"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"}
    assert engine["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "1"}


def test_without_a_template_the_pod_is_what_crossover_alone_generates():
    rendered = pod(spec_dict())
    spec = rendered["spec"]
    for key in ("priorityClassName", "serviceAccountName", "volumes", "affinity", "securityContext"):
        assert key not in spec
    assert "env" not in spec["containers"][0]
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ({"metadata": {"labels": {"app.kubernetes.io/component": "x"}}}, "may not set app.kubernetes.io/component"),
        ({"spec": {"container": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}}}, "GPUs come from engine.gpu"),
        ({"spec": {"container": {"volumeMounts": [{"name": "x", "mountPath": "/x"}]}}}, "does not define: ['x']"),
        ({"spec": {"volumes": [{"name": "x"}]}}, "exactly one source"),
        ({"spec": {"container": {"resources": {"requests": {"memory": "lots"}}}}}, "not a resource quantity"),
        ({"spec": {"container": {"env": [{"name": "A", "value": "1", "valueFrom": {}}]}}}, "valueFrom needs"),
        ({"spec": {"nodeSelector": {"k": "not a label value"}}}, "String should match pattern"),
        ({"spec": {"hostNetwork": True}}, "Extra inputs are not permitted"),
    ],
)
def test_templates_crossover_cannot_honour_are_refused(template, problem):
    with pytest.raises(ValidationError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        InferenceDeploymentSpec.model_validate(spec_dict(template=template))


# ---- gpu.type -> node selector --------------------------------------------------------------------------------


def test_gpu_type_selects_nodes_by_the_gpu_product_label():
    assert pod(spec_dict())["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_the_gpu_product_label_is_an_operator_setting():
    rendered = pod(spec_dict(), EngineSettings(gpu_product_label="cloud.google.com/gke-accelerator"))
    assert rendered["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "NVIDIA-H100-80GB-HBM3"}


def test_no_gpu_type_no_node_selector():
    spec = spec_dict()
    del spec["engine"]["gpu"]["type"]
    assert "nodeSelector" not in pod(spec)["spec"]


def test_a_template_node_selector_on_the_label_wins_over_gpu_type():
    template = {"spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-NVL"}}}
    assert pod(spec_dict(template=template))["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-NVL"}


def test_a_template_node_affinity_on_the_label_wins_over_gpu_type():
    terms = [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A", "B"]}]}]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    rendered = pod(spec_dict(template={"spec": {"affinity": affinity}}))
    assert "nodeSelector" not in rendered["spec"]
    assert rendered["spec"]["affinity"] == affinity


def test_other_template_node_selectors_add_to_gpu_type():
    rendered = pod(spec_dict(template={"spec": {"nodeSelector": {"pool": "llm"}}}))
    assert rendered["spec"]["nodeSelector"] == {"pool": "llm", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


# ---- 4. graceful stop -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drain", [0, 120, 900])
def test_grace_period_covers_the_pre_stop_delay_and_the_longest_request(drain):
    rendered = pod(spec_dict(drainSeconds=drain))
    assert rendered["spec"]["terminationGracePeriodSeconds"] == PRE_STOP_SECONDS + drain
    lifecycle = rendered["spec"]["containers"][0]["lifecycle"]
    assert lifecycle == {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}


def test_shipped_template_examples_parse_and_render():
    for path in sorted((REPO / "examples" / "templates").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        rendered = pod(spec)
        assert rendered["spec"]["containers"][0]["name"] == "engine", path


# ---- 4. scale-down removes the least busy pods first -------------------------------------------------------------


def _scale_down(inflight, pods=("a", "b", "c")):
    from datetime import UTC, datetime
    from decimal import Decimal

    from costpolicy import Demand
    from crossover.reconcile.children import RouterPodSettings
    from crossover.reconcile.ports import MetricsReading
    from crossover.reconcile.step import Resource, reconcile
    from tests.operator.fakes import FakeCluster, FakeMetrics

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    spec = spec_dict()
    spec["replicas"] = {"min": 0, "max": 8, "pinned": 1}  # 3 -> 1, as `kubectl scale` would ask
    cluster = FakeCluster(pods=list(pods))
    resource = Resource("llama-8b", "ml", "uid-1", 1, spec, {})
    settings = RouterPodSettings(image="crossover:test")
    reading = MetricsReading(Demand(Decimal(100), Decimal(10)), now)
    cluster.create({**engine_deployment(OWNER, InferenceDeploymentSpec.model_validate(spec)), "spec": {"replicas": 3}})
    metrics = FakeMetrics(reading, inflight=inflight)
    reconcile(resource, cluster, metrics, settings, now)
    return cluster


def test_scale_down_marks_each_pod_with_its_in_flight_requests_as_deletion_cost():
    from decimal import Decimal

    cluster = _scale_down({"a": Decimal(7), "b": Decimal(0), "c": Decimal("0.4")})
    assert cluster.scale_calls == [1]
    assert cluster.deletion_costs == {"a": 7, "b": 0, "c": 1}  # partial counts round up: busy is busy


def test_pods_whose_load_is_unknown_rank_as_the_busiest():
    from decimal import Decimal

    from crossover.reconcile.step import UNKNOWN_LOAD_COST

    assert _scale_down({"a": Decimal(2)}).deletion_costs == {"a": 2, "b": UNKNOWN_LOAD_COST, "c": UNKNOWN_LOAD_COST}
    assert set(_scale_down(None).deletion_costs.values()) == {UNKNOWN_LOAD_COST}


def test_scaling_up_marks_nothing():
    from datetime import UTC, datetime
    from decimal import Decimal

    from costpolicy import Demand
    from crossover.reconcile.children import RouterPodSettings
    from crossover.reconcile.ports import MetricsReading
    from crossover.reconcile.step import Resource, reconcile
    from tests.operator.fakes import FakeCluster, FakeMetrics

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    spec = spec_dict()
    spec["replicas"] = {"min": 0, "max": 8, "pinned": 3}
    cluster = FakeCluster(pods=["a"])
    reading = MetricsReading(Demand(Decimal(100), Decimal(10)), now)
    cluster.create({**engine_deployment(OWNER, InferenceDeploymentSpec.model_validate(spec)), "spec": {"replicas": 1}})
    reconcile(
        Resource("llama-8b", "ml", "uid-1", 1, spec, {}),
        cluster,
        FakeMetrics(reading, inflight={"a": Decimal(1)}),
        RouterPodSettings(image="crossover:test"),
        now,
    )
    assert cluster.scale_calls == [3] and cluster.deletion_costs == {}
