"""Graceful scale-down in the lab: 3 -> 1 under load, the idle pods go, the busy one stays, no request fails.

Before scaling down the operator marks every engine pod with its in-flight requests as pod-deletion-cost (read
from each engine's own gauges through Prometheus), so the ReplicaSet removes the idle pods; a removed pod's
endpoint is terminating (not ready) at once, routers stop sending to it, and the preStop delay plus the grace
period let it finish what it holds.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
import requests

from crossover.contracts import COMPONENT_LABEL, INSTANCE_LABEL, Component
from crossover_lab.config import local_address
from tests.fixtures.lab import HostedAPI, Lab, Release
from tests.lab.support import GROUP, PLURAL, VERSION, create, eventually
from tests.lab.test_operator_scaling import Load

pytestmark = pytest.mark.lab

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def manifest(namespace: str, api: HostedAPI) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceDeployment",
        "metadata": {
            "name": "drain",
            "namespace": namespace,
            # fast load, slow decode: a request of 400 tokens takes seconds, long enough to be in flight
            "annotations": {"lab.crossover.dev/cold-start-seconds": "1", "lab.crossover.dev/decode-tps": "400"},
        },
        "spec": {
            "model": {"name": "lab/llama", "servedName": "lab-llama"},
            "engine": {
                "image": "vllm/vllm-openai:v0.11.0",
                "gpu": {"count": 1},
                "capacity": {"prefillTokensPerSecond": "8000", "decodeTokensPerSecond": "400"},
                "drainSeconds": 60,
            },
            "replicas": {"min": 0, "max": 3, "pinned": 3},
            "selfHosted": {"pricing": {"rented": {"pricePerGPUHour": "2.50"}}},
            "api": {
                "baseURL": api.base_url,
                "model": "hosted-small",
                "credentialsSecretRef": {"name": "provider", "key": "apiKey"},
                "pricing": {"inputPerMillion": "3.00", "outputPerMillion": "15.00"},
            },
        },
    }


def ready(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def pods(lab: Lab, namespace: str, component: Component) -> list[Any]:
    selector = f"{INSTANCE_LABEL}=drain,{COMPONENT_LABEL}={component}"
    return list(lab.core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_scaling_3_to_1_under_load_removes_the_idle_pods_and_fails_nothing(
    lab: Lab, crossover_release: Release, namespace: str, hosted_api: HostedAPI
) -> None:
    lab.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider"}, "stringData": {"apiKey": hosted_api.key}}
    )  # type: ignore[arg-type]
    create(lab, manifest(namespace, hosted_api))
    engines = eventually(
        lambda: (
            (found := [p for p in pods(lab, namespace, Component.ENGINE) if ready(p)]) and len(found) == 3 and found
        ),
        timeout=120,
    )
    router = eventually(lambda: next((p for p in pods(lab, namespace, Component.ROUTER) if ready(p)), None), timeout=60)
    busy = engines[0].metadata.name
    busy_url = f"http://{local_address(engines[0].status.pod_ip)}:8000/v1/completions"

    # long requests straight to one engine pod: it is the busy one, the other two sit idle
    direct: Counter[int] = Counter()

    def long_request() -> None:
        body = {"model": "lab-llama", "prompt": "x " * 50, "max_tokens": 2400}
        try:
            direct[requests.post(busy_url, json=body, timeout=120).status_code] += 1
        except requests.RequestException:
            direct[0] += 1

    workers = [threading.Thread(target=long_request, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()

    def seen_busy() -> bool:
        query = f'vllm:num_requests_running{{namespace="{namespace}",pod="{busy}"}}'
        answer = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
        values = answer["data"]["result"]
        return bool(values) and float(values[0]["value"][1]) >= 1

    eventually(seen_busy, timeout=30)
    # light traffic through the router all along
    load = Load(f"http://{local_address(router.status.pod_ip)}:8080/v1/chat/completions", rate_per_second=2)
    load.output_tokens = 20
    load.start()
    try:
        lab.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "drain", {"spec": {"replicas": {"pinned": 1}}}
        )

        def one_left() -> list[Any] | None:
            left = [p for p in pods(lab, namespace, Component.ENGINE) if p.metadata.deletion_timestamp is None]
            return left if len(left) == 1 else None

        left = eventually(one_left, timeout=60)
        assert left[0].metadata.name == busy, "the busy pod was removed instead of an idle one"
        assert int(left[0].metadata.annotations[DELETION_COST]) >= 1
        for worker in workers:
            worker.join(120)
    finally:
        load.stop()
    assert direct == Counter({200: 4}), direct
    assert load.failed == 0 and sum(load.outcomes.values()) > 0, load.outcomes
