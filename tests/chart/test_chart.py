"""The Helm chart: lints clean and renders what a platform team expects (least privilege, secure pods, HA)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from crossover.contracts import ENV_PROMETHEUS_URL, ENV_RECONCILE_INTERVAL
from crossover_lab import binaries

pytestmark = pytest.mark.lab  # needs the helm binary the lab builds

CHART = Path(__file__).resolve().parents[2] / "charts" / "crossover"
KUBE_VERSION = "1.36.3"


@pytest.fixture(scope="module")
def helm() -> Path:
    return binaries.ensure()["helm"]


def template(helm: Path, *sets: str) -> list[dict[str, Any]]:
    args = [str(helm), "template", "crossover", str(CHART), "--namespace", "crossover-system"]
    args += ["--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_lint_is_clean_in_strict_mode(helm: Path) -> None:
    result = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_renders_operator_crd_and_rbac_without_wildcards(helm: Path) -> None:
    docs = template(helm)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    crd = by_kind(docs, "CustomResourceDefinition")[0]
    assert crd["metadata"]["name"] == "inferencedeployments.crossover.dev"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
    assert "ServiceMonitor" not in kinds


def test_operator_pod_is_locked_down(helm: Path) -> None:
    deployment = by_kind(template(helm), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "--standalone" in container["args"]
    assert "livenessProbe" in container


def test_values_flow_into_the_operator_environment(helm: Path) -> None:
    docs = template(helm, "prometheus.url=http://prom.example:9090", "reconcileIntervalSeconds=15")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[ENV_PROMETHEUS_URL] == "http://prom.example:9090"  # the names the operator reads
    assert env[ENV_RECONCILE_INTERVAL] == "15"


def test_two_replicas_use_kopf_peering_instead_of_standalone(helm: Path) -> None:
    docs = template(helm, "replicaCount=2")
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--standalone" not in container["args"]
    assert any(d["kind"] == "ClusterKopfPeering" for d in docs)


def test_service_monitor_is_optional(helm: Path) -> None:
    docs = template(helm, "serviceMonitor.enabled=true")
    assert len(by_kind(docs, "ServiceMonitor")) == 1


def test_gpu_product_label_flows_into_the_operator_environment(helm: Path) -> None:
    docs = template(helm, "engine.gpuProductLabel=cloud.google.com/gke-accelerator")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CROSSOVER_GPU_PRODUCT_LABEL"] == "cloud.google.com/gke-accelerator"
