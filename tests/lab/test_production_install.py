"""Issue 14's "done when": crossover installed the way a GPU cluster with kube-prometheus-stack would have it.

On the lab: the real prometheus-operator CRDs, `helm install` with the PodMonitor and the dashboard on, an example
whose template carries tolerations, a node selector and a Secret-backed env var; engine pods land only on nodes of
that GPU type, Prometheus finds their targets through Kubernetes service discovery with the relabelling translated
from the chart's PodMonitor, demand reaches status, every dashboard panel's PromQL returns data, and
`kubectl crossover explain` says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.contracts import API_CREDENTIALS_LABEL, COMPONENT_LABEL, INSTANCE_LABEL, Component
from crossover_lab import monitoring_crds
from crossover_lab.config import local_address
from crossover_lab.emulators.gpu import GPU_PRODUCT_LABEL
from tests.fixtures.lab import CHART, OPERATOR_NAMESPACE, HostedAPI, Lab, helm
from tests.lab.support import condition, create, eventually, get
from tests.lab.test_operator_scaling import Load

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "templates" / "tainted-gpu-pool.yaml"
TAINT = {"key": "dedicated", "value": "llm-inference", "effect": "NoSchedule"}


@pytest.fixture
def tainted_pool(lab: Lab) -> Iterator[tuple[str, list[str]]]:
    """The example's pool: the H100 nodes, tainted dedicated=llm-inference:NoSchedule for the test's duration."""
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    product = spec["engine"]["gpu"]["type"]
    nodes = [n for n in lab.core.list_node().items if (n.metadata.labels or {}).get(GPU_PRODUCT_LABEL) == product]
    others = [n.metadata.name for n in lab.core.list_node().items if n not in nodes]
    assert nodes and others, "the lab needs nodes of the example's GPU type and of another (CROSSOVER_LAB_GPU_PRODUCTS)"
    for node in nodes:
        lab.core.patch_node(node.metadata.name, {"spec": {"taints": [*(node.spec.taints or []), TAINT]}})
    try:
        yield product, [n.metadata.name for n in nodes]
    finally:
        for node in nodes:
            current = lab.core.read_node(node.metadata.name)
            kept = [t for t in current.spec.taints or [] if t.key != TAINT["key"]]
            lab.core.patch_node(node.metadata.name, {"spec": {"taints": kept or None}})


def install_chart(lab: Lab) -> None:
    values = {
        "prometheus": {"url": lab.prometheus_url, "rateWindowSeconds": 6},
        "reconcileIntervalSeconds": 1.0,
        "router": {"replicas": 1},
        "podMonitor": {"enabled": True},
        "dashboard": {"enabled": True},
    }
    path = lab.cfg.state / "production-values.json"
    path.write_text(json.dumps(values))
    result = helm(
        lab,
        "upgrade", "--install", "crossover", str(CHART),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--values", str(path), "--wait", "--timeout", "90s",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def manifest(namespace: str, api_url: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {
        "name": "pool",
        "namespace": namespace,
        "annotations": {"lab.crossover.dev/cold-start-seconds": "2"},  # the lab's H100 profile loads in 90 s
    }
    spec = body["spec"]
    spec["model"]["servedName"] = "lab-llama"  # the name the shared Load sends
    spec["engine"]["capacity"] = {"prefillTokensPerSecond": "8000", "decodeTokensPerSecond": "800"}
    spec["engine"]["drainSeconds"] = 5
    spec["replicas"] = {"min": 1, "max": 2}
    spec["api"].update(baseURL=api_url, pricing={"inputPerMillion": "3.00", "outputPerMillion": "15.00"})
    spec["policy"] = {
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 600,
        "metricsMaxAgeSeconds": 15,
        "breakEvenMargin": "0.05",
    }
    return body


def engine_pods(lab: Lab, namespace: str) -> list[Any]:
    selector = f"{INSTANCE_LABEL}=pool,{COMPONENT_LABEL}={Component.ENGINE}"
    return list(lab.core.list_namespaced_pod(namespace, label_selector=selector).items)


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def query(lab: Lab, promql: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", (promql, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_a_production_style_install_schedules_discovers_and_charts(
    lab: Lab, namespace: str, hosted_api: HostedAPI, tainted_pool: tuple[str, list[str]], tmp_path: Path
) -> None:
    product, pool = tainted_pool
    api_url, api_key = hosted_api.base_url, hosted_api.key
    # the real prometheus-operator CRDs (the lab installs them; idempotent), then the chart with both monitors' API
    assert set(monitoring_crds.install(lab.api)) == {
        "podmonitors.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
    }
    install_chart(lab)
    custom = client.CustomObjectsApi(lab.api)
    monitors = custom.list_namespaced_custom_object("monitoring.coreos.com", "v1", OPERATOR_NAMESPACE, "podmonitors")
    assert [m["metadata"]["name"] for m in monitors["items"]] == ["crossover-workloads"]
    with pytest.raises(ApiException) as refused:  # the API server validates PodMonitors with the real schema
        bad = {**monitors["items"][0], "metadata": {"name": "bad"}, "spec": {"podMetricsEndpoints": "http"}}
        custom.create_namespaced_custom_object("monitoring.coreos.com", "v1", OPERATOR_NAMESPACE, "podmonitors", bad)
    assert refused.value.status == 422
    board = json.loads(
        lab.core.read_namespaced_config_map("crossover-dashboard", OPERATOR_NAMESPACE).data["crossover.json"]
    )

    # the example: a gated model's HF_TOKEN from a Secret, tolerations and a node selector for the tainted pool
    lab.core.create_namespaced_secret(namespace, {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_x"}})  # type: ignore[arg-type]
    lab.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "provider-key", "labels": {API_CREDENTIALS_LABEL: "true"}},
            "stringData": {"apiKey": api_key},
        },  # type: ignore[arg-type]
    )
    scheduling = client.SchedulingV1Api(lab.api)
    try:
        scheduling.create_priority_class({"metadata": {"name": "llm-inference"}, "value": 1000})  # type: ignore[arg-type]
    except ApiException as error:
        if error.status != 409:
            raise
    create(lab, manifest(namespace, api_url))
    first = eventually(lambda: [p for p in engine_pods(lab, namespace) if ready(p)], timeout=90)[0]
    engine = first.spec.containers[0]
    assert first.spec.node_name in pool, (first.spec.node_name, pool)
    assert first.spec.node_selector == {GPU_PRODUCT_LABEL: product}
    assert first.spec.priority_class_name == "llm-inference"
    assert any(t.key == "dedicated" and t.value == "llm-inference" for t in first.spec.tolerations)
    hf = next(e for e in engine.env if e.name == "HF_TOKEN")
    assert hf.value is None and hf.value_from.secret_key_ref.name == "hf-token"  # a reference, never the value

    router = eventually(
        lambda: next(
            (
                p
                for p in lab.core.list_namespaced_pod(
                    namespace, label_selector=f"{INSTANCE_LABEL}=pool,{COMPONENT_LABEL}={Component.ROUTER}"
                ).items
                if ready(p)
            ),
            None,
        ),
        timeout=60,
    )
    load = Load(f"http://{local_address(router.status.pod_ip)}:8080/v1/chat/completions", rate_per_second=6)
    load.start()
    try:
        # targets found by Kubernetes service discovery, labelled as the chart's PodMonitor labels them
        def discovered() -> list[dict[str, Any]] | None:
            targets = requests.get(f"{lab.prometheus_url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            ours = [
                t
                for t in targets
                if t["labels"].get("namespace") == namespace
                and t["labels"].get("crossover_dev_inference_deployment") == "pool"
                and t["health"] == "up"
            ]
            components = {t["labels"].get("app_kubernetes_io_component") for t in ours}
            return ours if components == {"engine", "router"} else None

        targets = eventually(discovered, timeout=60)
        assert all(t["scrapePool"] == "podMonitor/crossover-system/crossover-workloads/0" for t in targets)
        assert all(t["discoveredLabels"]["__meta_kubernetes_pod_container_port_name"] == "http" for t in targets)

        # every pod scheduled so far (the load may have asked for a second) sits in the pool
        assert {p.spec.node_name for p in engine_pods(lab, namespace) if p.spec.node_name} <= set(pool)

        def flowing() -> dict[str, Any] | None:
            found = (get(lab, namespace, "pool").get("status") or {}).get("demand")
            positive = found and float(found["inputTokensPerSecond"]) > 0 and float(found["outputTokensPerSecond"]) > 0
            return found if positive else None

        demand = eventually(flowing, timeout=60)
        print(f"\nstatus.demand: {demand}")
        assert condition(get(lab, namespace, "pool"), "MetricsAvailable")["status"] == "True"

        # every panel of the dashboard the chart installed returns data for this InferenceDeployment
        def substitute(expr: str) -> str:
            return (
                expr.replace("$namespace", namespace)
                .replace("$name", "pool")
                .replace("$__rate_interval", "30s")
                .replace("$__range", "10m")
            )

        panels = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]

        def all_answer() -> list[str] | None:
            empty = [title for title, expr in panels if not query(lab, substitute(expr))]
            return None if empty else ["all"]

        try:
            eventually(all_answer, timeout=90, interval=2)
        except AssertionError:
            missing = [f"{title}: {expr}" for title, expr in panels if not query(lab, substitute(expr))]
            raise AssertionError(f"panels without data: {missing}") from None
        annotation = board["annotations"]["list"][0]["expr"]
        query(lab, substitute(annotation))  # valid PromQL (data only once the operator scaled)

        # what `kubectl get infd` shows a user: the printer columns, GPU utilisation and the month's saving included
        table = subprocess.run(
            [str(lab.bins["kubectl"]), "--kubeconfig", str(lab.kubeconfig), "get", "infd", "-n", namespace],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        header, row = table.splitlines()[:2]
        for column in ("DESIRED", "READY", "SPILL", "SELF $/MTOK", "API $/MTOK", "SAVED", "GPU-UTIL", "REASON"):
            assert column in header, table
        gpu = header.index("GPU-UTIL")  # headers hold spaces: find the column by position
        assert 0 <= float(row[gpu:].split()[0]) <= 100, table  # known (not <none>); light load: near idle GPUs
        print("\n$ kubectl get infd\n" + table)
    finally:
        load.stop()
    assert load.failed == 0, load.outcomes

    # why: `kubectl crossover explain`, the plugin as kubectl runs it
    plugin = Path(sys.executable).parent / "kubectl-crossover"
    explained = subprocess.run(
        [str(plugin), "--kubeconfig", str(lab.kubeconfig), "-n", namespace, "explain", "pool"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert explained.returncode == 0, explained.stderr
    assert "costs compared" in explained.stdout and "stage by stage" in explained.stdout
    assert "hf_x" not in explained.stdout and api_key not in explained.stdout
    print("\n$ kubectl crossover explain pool\n" + explained.stdout)
    out = os.environ.get("CROSSOVER_EXPLAIN_OUT")
    if out:
        Path(out).write_text(explained.stdout)
