"""spec.engine.template against the real API server: the CRD schema refuses what crossover cannot honour, and a
template can make engine pods pass the `restricted` Pod Security Standard."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.api.crd import build_crd
from crossover.contracts import Component, selector_string
from tests.fixtures.lab import Lab, Release
from tests.lab.support import condition, create, eventually, get

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def manifest(namespace: str, name: str, template: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples/llama-8b-h100-vs-haiku.yaml").read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    engine = body["spec"]["engine"]
    engine.update(coldStartSeconds=1, drainSeconds=0)
    body["spec"]["replicas"] = {"min": 1, "max": 1}
    if template is not None:
        engine["template"] = template
    return body


@pytest.fixture
def crd(lab: Lab, crossover_release: Release) -> None:
    """The chart's CRD (generated from the models) is installed and established."""
    ext = client.ApiextensionsV1Api(lab.api)
    name = build_crd()["metadata"]["name"]

    def established() -> bool:
        got = ext.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])

    eventually(established, timeout=30)


FULL = {
    "metadata": {"labels": {"team": "search"}, "annotations": {"example.com/owner": "search"}},
    "spec": {
        "nodeSelector": {"pool": "llm"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "llm",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}}],
        "container": {
            "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
            "envFrom": [{"secretRef": {"name": "more"}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/models"}],
            "resources": {"requests": {"cpu": 8, "memory": "64Gi"}},
        },
    },
}


def test_the_api_server_accepts_a_full_template(lab: Lab, crd: None, namespace: str) -> None:
    create(lab, manifest(namespace, "full", copy.deepcopy(FULL)))
    stored = get(lab, namespace, "full")["spec"]["engine"]["template"]
    assert stored["spec"]["container"]["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert stored["spec"]["volumes"] == FULL["spec"]["volumes"]
    assert stored["spec"]["affinity"] == FULL["spec"]["affinity"]  # kept, not pruned


FIELD_REF = {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"metadata": {"labels": {"crossover.dev/inference-deployment": "x"}}}, "crossover selects pods by them"),
        ({"spec": {"container": {"resources": {"limits": {"nvidia.com/gpu": 2}}}}}, "GPUs come from engine.gpu"),
        ({"spec": {"container": {"volumeMounts": [{"name": "x", "mountPath": "/x"}]}}}, "must name a volume"),
        ({"spec": {"volumes": [{"name": "x"}]}}, "exactly one source"),
        ({"spec": {"volumes": [{"name": "x", "emptyDir": {}, "secret": {}}]}}, "exactly one source"),
        ({"spec": {"container": {"resources": {"requests": {"memory": "lots"}}}}}, "should match"),
        ({"spec": {"container": {"env": [{"name": "A", "value": "1", "valueFrom": FIELD_REF}]}}}, "not both"),
        ({"spec": {"tolerations": [{"key": "k", "effect": "Sometimes"}]}}, "Unsupported value"),
        ({"spec": {"nodeSelector": {"k": "not a label value"}}}, "should match"),
    ],
    ids=["reserved-label", "gpu-in-resources", "mount-without-volume", "volume-without-source", "two-sources",
         "bad-quantity", "value-and-valueFrom", "bad-effect", "bad-selector-value"],
)  # fmt: skip
def test_the_api_server_refuses_templates_crossover_cannot_honour(
    lab: Lab, crd: None, namespace: str, template: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(lab, manifest(namespace, "bad", template))
    assert refused.value.status == 422
    assert message in str(refused.value.body), refused.value.body


RESTRICTED = {
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    }
}


def _pods(lab: Lab, namespace: str, name: str) -> list[Any]:
    selector = selector_string(name, Component.ENGINE)
    return list(lab.core.list_namespaced_pod(namespace, label_selector=selector).items)


def _refused_by_pod_security(lab: Lab, namespace: str) -> str | None:
    for event in lab.core.list_namespaced_event(namespace).items:
        if event.reason == "FailedCreate" and "violates PodSecurity" in (event.message or ""):
            return str(event.message)
    return None


def test_a_template_makes_engine_pods_pass_the_restricted_pod_security_standard(
    lab: Lab, crossover_release: Release, namespace: str
) -> None:
    lab.core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    # without a template: the API server refuses crossover's engine pods (root allowed, no seccomp profile)
    create(lab, manifest(namespace, "plain", None))
    message = eventually(lambda: _refused_by_pod_security(lab, namespace), timeout=60)
    assert "runAsNonRoot" in message and "seccompProfile" in message
    assert _pods(lab, namespace, "plain") == []
    # with it: admitted, and they run
    create(lab, manifest(namespace, "restricted", RESTRICTED))
    pods = eventually(lambda: _pods(lab, namespace, "restricted"), timeout=60)
    context = pods[0].spec.security_context
    assert context.run_as_non_root is True and context.seccomp_profile.type == "RuntimeDefault"
    engine = pods[0].spec.containers[0]
    assert engine.security_context.allow_privilege_escalation is False
    assert engine.security_context.capabilities.drop == ["ALL"]
    resource = eventually(lambda: (r := get(lab, namespace, "restricted")) and condition(r, "SpecValid") and r)
    assert condition(resource, "SpecValid")["status"] == "True"


def test_a_merged_template_the_api_server_refuses_is_reported_not_retried_blindly(
    lab: Lab, crossover_release: Release, namespace: str
) -> None:
    # the CRD keeps affinity open; the Deployment's own validation refuses a wrong operator there
    bad_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]
            }
        }
    }
    create(lab, manifest(namespace, "odd", {"spec": {"affinity": bad_affinity}}))

    def invalid() -> dict[str, Any] | None:
        found = condition(get(lab, namespace, "odd"), "SpecValid")
        return found if found is not None and found["status"] == "False" else None

    found = eventually(invalid, timeout=60)
    assert "rejected by the API server" in found["message"] and "Near" in found["message"], found
