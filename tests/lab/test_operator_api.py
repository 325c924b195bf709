"""The operator against the real API server: validation, children, ownership, drift, autoscaler conflicts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from crossover.contracts import GROUP, PLURAL, VERSION
from tests.fixtures.lab import Lab, Release
from tests.lab.support import condition, create, eventually, get

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama-8b-h100-vs-haiku.yaml"
OWNED = {"purchasePricePerGPU": "30000", "amortizationMonths": 36, "powerWatts": 700, "electricityPricePerKWh": "0.12"}


def manifest(name: str, namespace: str, **policy: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["policy"].update(policy)
    return body


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["replicas"].update({"min": 5, "max": 2}), "min"),
        (lambda s: s["selfHosted"]["pricing"].update({"owned": OWNED}), "exactly one"),
        (lambda s: s["engine"]["capacity"].update({"decodeTokensPerSecond": "0"}), "decodeTokensPerSecond"),
        (lambda s: s["policy"].update({"mode": "Cheapest"}), "mode"),
    ],
    ids=["min-above-max", "two-pricing-modes", "zero-capacity", "unknown-mode"],
)
def test_api_server_rejects_invalid_manifests_with_a_clear_message(
    lab: Lab, crossover_release: Release, namespace: str, change: Any, expected: str
) -> None:
    body = manifest("bad", namespace)
    change(body["spec"])
    with pytest.raises(ApiException) as rejected:
        create(lab, body)
    assert rejected.value.status == 422
    assert expected in str(rejected.value.body)
    with pytest.raises(ApiException) as missing:
        get(lab, namespace, "bad")
    assert missing.value.status == 404


def test_children_are_created_owned_and_removed_with_the_resource(
    lab: Lab, crossover_release: Release, namespace: str
) -> None:
    create(lab, manifest("llm", namespace))
    deployments = eventually(
        lambda: (
            {d.metadata.name for d in lab.apps.list_namespaced_deployment(namespace).items}
            >= {"llm-engine", "llm-router"}
            or None
        ),
        timeout=30,
    )
    assert deployments
    services = {s.metadata.name for s in lab.core.list_namespaced_service(namespace).items}
    assert {"llm", "llm-engine"} <= services
    engine = lab.apps.read_namespaced_deployment("llm-engine", namespace)
    owner = engine.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("InferenceDeployment", "llm", True)
    resource = eventually(lambda: (r := get(lab, namespace, "llm")).get("status", {}).get("lastDecision") and r)
    assert resource["status"]["observedGeneration"] == resource["metadata"]["generation"]

    lab.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "llm")

    def gone() -> bool:
        left = [d.metadata.name for d in lab.apps.list_namespaced_deployment(namespace).items]
        left += [s.metadata.name for s in lab.core.list_namespaced_service(namespace).items]
        return not left

    eventually(gone, timeout=60)


def test_user_edits_to_children_are_reconciled_back(lab: Lab, crossover_release: Release, namespace: str) -> None:
    create(lab, manifest("drift", namespace))
    engine = eventually(
        lambda: next(
            iter(lab.apps.list_namespaced_deployment(namespace, field_selector="metadata.name=drift-engine").items),
            None,
        )
    )
    wanted = copy.deepcopy(engine.spec.template.spec.containers[0].image)
    lab.apps.patch_namespaced_deployment(
        "drift-engine",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "example/tampered:1"}]}}}},
    )

    def restored() -> bool:
        current = lab.apps.read_namespaced_deployment("drift-engine", namespace)
        return bool(current.spec.template.spec.containers[0].image == wanted)

    eventually(restored, timeout=30)


def test_refuses_to_fight_an_hpa_on_the_engine(lab: Lab, crossover_release: Release, namespace: str) -> None:
    create(lab, manifest("hpa", namespace))
    eventually(lambda: get(lab, namespace, "hpa").get("status", {}).get("lastDecision"))
    from kubernetes import client

    client.AutoscalingV2Api(lab.api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {  # type: ignore[arg-type]
            "metadata": {"name": "engine-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hpa-engine"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                    }
                ],
            },
        },
    )

    def conflict() -> dict[str, Any] | None:
        found = condition(get(lab, namespace, "hpa"), "AutoscalerConflict")
        return found if found and found["status"] == "True" else None

    found = eventually(conflict, timeout=30)
    assert "engine-hpa" in found["message"]
    events = lab.core.list_namespaced_event(namespace, field_selector="involvedObject.name=hpa").items
    assert any(e.type == "Warning" and "AutoscalerConflict" in (e.message or "") for e in events)
